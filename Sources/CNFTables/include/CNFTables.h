#ifndef TUPP_CNFTABLES_H
#define TUPP_CNFTABLES_H

#include <nftables/libnftables.h>

/// Loads libnftables on first use. NULL when it is ready, else why it is not (dlerror's
/// text). Call before any nft_* function: they are stubs that forward to the loaded
/// library (see lazy.c).
const char *tupp_nftables_load(void);

#endif
