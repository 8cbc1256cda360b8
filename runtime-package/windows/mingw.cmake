# CMake toolchain: Windows x86-64 DLLs from Debian's mingw-w64 (posix threads flavour).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc-posix)
set(CMAKE_CXX_COMPILER x86_64-w64-mingw32-g++-posix)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Every DLL, the CPU variants (CMake MODULE libraries) included, carries its own libstdc++,
# libgcc and winpthreads (-static), so the runtime ships no mingw DLLs; --exclude-libs keeps
# those static libraries' symbols out of each DLL's exports (without it every DLL re-exports
# libstdc++ and the links clash).
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static -static-libgcc -static-libstdc++ -Wl,--exclude-libs,ALL")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static -static-libgcc -static-libstdc++ -Wl,--exclude-libs,ALL")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# Windows x64 guarantees a 16-byte aligned stack and gcc cannot realign it for 32- and 64-byte
# vectors that it spills there, yet emits aligned moves (vmovaps, vmovdqa64) for them: a crash
# in the AVX/AVX-512 variants whenever a spill slot lands on a 16-byte boundary (GCC bug 54412).
# The assembler writes every aligned vector move as its unaligned twin, which costs nothing on
# aligned data on the CPUs these variants are for.
set(CMAKE_C_FLAGS_INIT "-Wa,-muse-unaligned-vector-move")
set(CMAKE_CXX_FLAGS_INIT "-Wa,-muse-unaligned-vector-move")
