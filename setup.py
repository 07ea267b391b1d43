"""Build the locust-c C extensions against the system libcurl and libuv.

The libraries are found with pkg-config. When one is missing the build stops with a single line that names
the Debian packages to install, rather than a compiler traceback.

Build switches (environment variables):
    LOCUST_C_DEBUG=1     -O0 -g, assertions on
    LOCUST_C_SANITIZE=1  AddressSanitizer and UndefinedBehaviorSanitizer, assertions on (``make sanitize`` runs
                         the engine suites so: Python needs LD_PRELOAD=$(gcc -print-file-name=libasan.so))
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup

PACKAGES_HINT = "apt-get install libcurl4-openssl-dev libssl-dev libuv1-dev zlib1g-dev libbrotli-dev pkg-config"


LIBRARIES = ("libcurl", "libssl", "libcrypto", "libuv", "zlib", "libbrotlidec")


def fail(message: str) -> None:
    sys.stderr.write(f"locust-c build: {message}\n")
    raise SystemExit(1)


def pkg_config(*args: str) -> list[str]:
    out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True).stdout
    return out.split()


def find_libraries() -> tuple[list[str], list[str]]:
    if shutil.which("pkg-config") is None:
        fail(f"pkg-config not found; install it with: {PACKAGES_HINT}")
    missing = [lib for lib in LIBRARIES if subprocess.run(["pkg-config", "--exists", lib]).returncode]
    if missing:
        fail(f"{', '.join(missing)} development files not found; install them with: {PACKAGES_HINT}")
    return pkg_config("--cflags", *LIBRARIES), pkg_config("--libs", *LIBRARIES)


def compile_args() -> tuple[list[str], list[str]]:
    # Only PyInit_* leaves the extension (PyMODINIT_FUNC marks it visible): the engine's symbols stay its own.
    cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
              "-fvisibility=hidden"]
    ldflags: list[str] = []
    if os.environ.get("LOCUST_C_DEBUG") == "1":
        cflags += ["-O0", "-g3", "-UNDEBUG", "-DLOCUST_C_DEBUG=1"]
    else:
        cflags += ["-O2", "-DNDEBUG"]
    if os.environ.get("LOCUST_C_SANITIZE") == "1":
        cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-UNDEBUG"]
        ldflags += ["-fsanitize=address,undefined"]
    return cflags, ldflags


lib_cflags, lib_ldflags = find_libraries() if "egg_info" not in sys.argv and "sdist" not in sys.argv else ([], [])
cflags, ldflags = compile_args()

engine = Extension(
    "locust_c._engine",
    sources=["csrc/py_module.c", "csrc/py_engine.c", "csrc/py_client.c", "csrc/py_result.c", "csrc/py_stats.c",
             "csrc/py_session.c", "csrc/loop.c", "csrc/buf.c", "csrc/sockets.c", "csrc/users.c", "csrc/curl.c",
             "csrc/decode.c", "csrc/stats.c", "csrc/tls.c", "csrc/stream.c", "csrc/url.c", "csrc/cookies.c",
             "csrc/request.c", "csrc/h1.c", "csrc/native.c"],
    depends=["csrc/locust_c.h", "csrc/py_types.h"],
    extra_compile_args=cflags + lib_cflags,
    extra_link_args=ldflags + lib_ldflags,
)
testserver = Extension(
    "locust_c._testserver",
    sources=["csrc/testserver.c"],
    extra_compile_args=cflags + lib_cflags,
    extra_link_args=ldflags + lib_ldflags,
)

setup(ext_modules=[engine, testserver])
