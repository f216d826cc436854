// libnftables, loaded when tupp first reads or writes a rule set rather than when it starts.
//
// Why C: glibc has no lazy library loading, and libnftables brings libnftnl, libmnl,
// libjansson, libgmp and libxtables with it. Only plans and applies that declare NAT or
// published ports need them; `tupp status`, `exec`, `logs` and `validate` must not pay
// for mapping and relocating them. As in CArchive, each nft_* function tupp calls is a
// hidden stub here, checked by the compiler against libnftables.h, that forwards to the
// symbol dlopen found.

#include "CNFTables.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

// X(return type, name, parameters, arguments): every function NFTables.swift uses
// besides nft_ctx_new, which is written out below; those returning void apart (C allows
// no `return f();` in a void function).
#define TUPP_NFT_VOID_FUNCTIONS(X) \
    X(void, nft_ctx_free, (struct nft_ctx *ctx), (ctx)) \
    X(void, nft_ctx_output_set_flags, (struct nft_ctx *ctx, unsigned int flags), (ctx, flags))
#define TUPP_NFT_FUNCTIONS(X) \
    X(int, nft_ctx_buffer_output, (struct nft_ctx *ctx), (ctx)) \
    X(int, nft_ctx_buffer_error, (struct nft_ctx *ctx), (ctx)) \
    X(const char *, nft_ctx_get_output_buffer, (struct nft_ctx *ctx), (ctx)) \
    X(const char *, nft_ctx_get_error_buffer, (struct nft_ctx *ctx), (ctx)) \
    X(int, nft_run_cmd_from_buffer, (struct nft_ctx *nft, const char *buf), (nft, buf))

#define TUPP_FIELD(ret, name, params, args) ret (*name) params;
static struct {
    struct nft_ctx *(*nft_ctx_new)(uint32_t flags);
    TUPP_NFT_VOID_FUNCTIONS(TUPP_FIELD)
    TUPP_NFT_FUNCTIONS(TUPP_FIELD)
} loaded;
#undef TUPP_FIELD

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void) {
    // The soname, not libnftables.so: that link exists only where the -dev package is.
    void *handle = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_error, sizeof load_error, "%s (install the libnftables1 package)", dlerror());
        return;
    }
#define TUPP_RESOLVE(ret, name, params, args) \
    if (!(*(void **)&loaded.name = dlsym(handle, #name))) { \
        snprintf(load_error, sizeof load_error, "libnftables.so.1 has no %s", #name); \
        return; \
    }
    TUPP_RESOLVE(, nft_ctx_new, , )
    TUPP_NFT_VOID_FUNCTIONS(TUPP_RESOLVE)
    TUPP_NFT_FUNCTIONS(TUPP_RESOLVE)
#undef TUPP_RESOLVE
}

const char *tupp_nftables_load(void) {
    pthread_once(&load_once, load);
    return load_error[0] ? load_error : NULL;
}

// nft_ctx_new answers NULL when the library is missing, so nothing crashes; the rest
// take its context and are unreachable without it.
struct nft_ctx *nft_ctx_new(uint32_t flags) __attribute__((visibility("hidden")));
struct nft_ctx *nft_ctx_new(uint32_t flags) {
    return tupp_nftables_load() ? NULL : loaded.nft_ctx_new(flags);
}

#define TUPP_STUB(ret, name, params, args) \
    __attribute__((visibility("hidden"))) ret name params { return loaded.name args; }
TUPP_NFT_FUNCTIONS(TUPP_STUB)
#undef TUPP_STUB
#define TUPP_VOID_STUB(ret, name, params, args) \
    __attribute__((visibility("hidden"))) ret name params { loaded.name args; }
TUPP_NFT_VOID_FUNCTIONS(TUPP_VOID_STUB)
#undef TUPP_VOID_STUB
