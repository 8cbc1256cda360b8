/* A stand-in for Windows' bcryptprimitives.dll, which wine 8.0 lacks: Rust's standard library
 * (in pydantic-core) gets its random bytes from ProcessPrng there. Put into the tests' own
 * wine prefix only (tests/wine.py); real Windows 10/11 have the DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length) {
        ULONG n = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}
