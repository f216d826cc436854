// libarchive, loaded when the first archive is read rather than when tupp starts.
//
// Why C: glibc has no lazy library loading, and Debian's libarchive brings ten more
// libraries with it (libxml2, ICU, nettle, zstd, lzma, …). Linked normally they cost every
// tupp start about 1.8 ms of mapping and relocation, a quarter of `tupp validate` — for
// code that only image imports run. Instead each archive_* function tupp calls is
// defined here as a stub that forwards to the symbol dlopen found. The stubs are checked
// against archive.h's prototypes by the compiler, and hidden, so they never interpose on
// libarchive's calls to itself.

#include "CArchive.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

// X(return type, name, parameters, arguments): every function ArchiveExtractor uses
// besides archive_read_new, which is written out below.
#define TUPP_ARCHIVE_FUNCTIONS(X) \
    X(int, archive_read_free, (struct archive *a), (a)) \
    X(int, archive_read_support_filter_all, (struct archive *a), (a)) \
    X(int, archive_read_support_format_tar, (struct archive *a), (a)) \
    X(int, archive_read_support_format_raw, (struct archive *a), (a)) \
    X(int, archive_read_append_filter, (struct archive *a, int code), (a, code)) \
    X(int, archive_read_open, (struct archive *a, void *data, archive_open_callback *open, \
                               archive_read_callback *read, archive_close_callback *close), \
      (a, data, open, read, close)) \
    X(int, archive_read_next_header, (struct archive *a, struct archive_entry **entry), (a, entry)) \
    X(int, archive_read_data_block, (struct archive *a, const void **buffer, size_t *size, la_int64_t *offset), \
      (a, buffer, size, offset)) \
    X(int, archive_errno, (struct archive *a), (a)) \
    X(const char *, archive_error_string, (struct archive *a), (a)) \
    X(const char *, archive_entry_pathname, (struct archive_entry *e), (e)) \
    X(const char *, archive_entry_hardlink, (struct archive_entry *e), (e)) \
    X(const char *, archive_entry_symlink, (struct archive_entry *e), (e)) \
    X(__LA_MODE_T, archive_entry_mode, (struct archive_entry *e), (e)) \
    X(la_int64_t, archive_entry_uid, (struct archive_entry *e), (e)) \
    X(la_int64_t, archive_entry_gid, (struct archive_entry *e), (e)) \
    X(la_int64_t, archive_entry_size, (struct archive_entry *e), (e)) \
    X(int, archive_entry_size_is_set, (struct archive_entry *e), (e)) \
    X(dev_t, archive_entry_rdevmajor, (struct archive_entry *e), (e)) \
    X(dev_t, archive_entry_rdevminor, (struct archive_entry *e), (e)) \
    X(time_t, archive_entry_mtime, (struct archive_entry *e), (e)) \
    X(long, archive_entry_mtime_nsec, (struct archive_entry *e), (e)) \
    X(int, archive_entry_mtime_is_set, (struct archive_entry *e), (e)) \
    X(time_t, archive_entry_atime, (struct archive_entry *e), (e)) \
    X(long, archive_entry_atime_nsec, (struct archive_entry *e), (e)) \
    X(int, archive_entry_atime_is_set, (struct archive_entry *e), (e)) \
    X(int, archive_entry_xattr_reset, (struct archive_entry *e), (e)) \
    X(int, archive_entry_xattr_next, (struct archive_entry *e, const char **name, const void **value, size_t *size), \
      (e, name, value, size))

#define TUPP_FIELD(ret, name, params, args) ret (*name) params;
static struct {
    struct archive *(*archive_read_new)(void);
    TUPP_ARCHIVE_FUNCTIONS(TUPP_FIELD)
} loaded;
#undef TUPP_FIELD

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void) {
    // The soname, not libarchive.so: that link exists only where the -dev package is.
    void *handle = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_error, sizeof load_error, "%s (install the libarchive13 package)", dlerror());
        return;
    }
#define TUPP_RESOLVE(ret, name, params, args) \
    if (!(*(void **)&loaded.name = dlsym(handle, #name))) { \
        snprintf(load_error, sizeof load_error, "libarchive.so.13 has no %s", #name); \
        return; \
    }
    TUPP_RESOLVE(, archive_read_new, , )
    TUPP_ARCHIVE_FUNCTIONS(TUPP_RESOLVE)
#undef TUPP_RESOLVE
}

const char *tupp_archive_load(void) {
    pthread_once(&load_once, load);
    return load_error[0] ? load_error : NULL;
}

// archive_read_new answers NULL when the library is missing (the caller's out-of-memory
// path, so nothing crashes); the rest take its archive and are unreachable without it.
struct archive *archive_read_new(void) __attribute__((visibility("hidden")));
struct archive *archive_read_new(void) {
    return tupp_archive_load() ? NULL : loaded.archive_read_new();
}

#define TUPP_STUB(ret, name, params, args) \
    __attribute__((visibility("hidden"))) ret name params { return loaded.name args; }
TUPP_ARCHIVE_FUNCTIONS(TUPP_STUB)
#undef TUPP_STUB
