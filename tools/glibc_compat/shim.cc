// Definitions of the six symbols that the manylinux_2_39 wheels of ml-metadata 1.21.0 and
// tensorflow-data-validation 1.21.0 import from glibc >= 2.38 / libstdc++ >= 13 but that
// Debian 12 (glibc 2.36, GCC 12) lacks. glibc_compat.py strips their symbol versions in the
// extension .so files and adds this library as a dependency, so these definitions are used.
#include <cstdlib>
#include <exception>
#include <ios>
#include <cxxabi.h>

extern "C" {

// GLIBC_2.38: the C23 variants differ from the C17 ones only in also accepting a "0b" prefix
// (base 0 or 2), which the C17 functions read as 0.
long __isoc23_strtol(const char* s, char** end, int base) {
  return std::strtol(s, end, base);
}
unsigned long __isoc23_strtoul(const char* s, char** end, int base) {
  return std::strtoul(s, end, base);
}
long long __isoc23_strtoll(const char* s, char** end, int base) {
  return std::strtoll(s, end, base);
}
unsigned long long __isoc23_strtoull(const char* s, char** end, int base) {
  return std::strtoull(s, end, base);
}

// CXXABI_1.3.15: GCC 14 calls this when an exception escapes a noexcept function. Same
// contract as libsupc++: begin catching the exception, so that the terminate handler sees it
// as std::current_exception() (the default handler prints its type), then terminate.
void __cxa_call_terminate(void* unwind_header) noexcept {
  if (unwind_header) __cxxabiv1::__cxa_begin_catch(unwind_header);
  std::terminate();
}

}  // extern "C"

// GLIBCXX_3.4.32: GCC 13's <iostream> references this instead of defining a static
// std::ios_base::Init per translation unit; it only has to guarantee the standard streams are
// initialised. This library is a DT_NEEDED of the extension, so its static initialiser below
// runs before the extension's own.
static std::ios_base::Init ios_init;
namespace std {
void ios_base_library_init() {}
}  // namespace std
