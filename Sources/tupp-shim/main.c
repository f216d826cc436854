// tupp-shim: see shim.h for what it is and how it is laid out.
//
//   tupp-shim run DIR      supervise the container described by DIR/spec (fd 3: sync socket)
//   tupp-shim exec DIR [--tty] [--env K=V]... [--workdir W] [--user UID:GID [--group GID]...
//                      [--home DIR]] -- CMD ARGS...
#include "shim.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "run")) return supervise_main(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "exec")) return exec_main(argc, argv);
    fprintf(stderr,
            "usage: tupp-shim run DIR\n"
            "       tupp-shim exec DIR [--tty] [--env K=V]... [--workdir W] [--user UID:GID [--group GID]...\n"
            "                      [--home DIR]] -- CMD ARGS...\n");
    return 2;
}

// SwiftPM links every executable target with the Swift runtime's startup object, which
// calls this hook to register the image. Defining it here keeps the Swift runtime out of
// this pure C binary (no libswiftCore in a process that stays resident per container).
void swift_addNewDSOImage(const void *h) { (void)h; }

// The same startup object also references this backtracer hook; without a local
// definition the linker pulls Swift's backtracer and demangler (~500 KiB of text and a
// static constructor that runs in every shim) into this C program. A C binary has no
// Swift thunks to recognise.
bool _swift_backtrace_isThunkFunction(const char *mangled_name);
bool _swift_backtrace_isThunkFunction(const char *mangled_name) {
    (void)mangled_name;
    return false;
}
