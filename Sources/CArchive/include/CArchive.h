#ifndef TUPP_CARCHIVE_H
#define TUPP_CARCHIVE_H

#include <archive.h>
#include <archive_entry.h>

/// Loads libarchive on first use. NULL when it is ready, else why it is not (dlerror's
/// text). Call before any archive_* function: they are stubs that forward to the loaded
/// library (see lazy.c).
const char *tupp_archive_load(void);

#endif
