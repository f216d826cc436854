// The seccomp filter: the spec carries a normalized rule list (TuppRuntime resolved the
// profile's conditions against the container's capabilities and this host), libseccomp
// turns it into classic BPF, and the process loads that as its very last step before
// exec — after no_new_privs, which lets an unprivileged process install a filter.
//
// Compiling Moby's profile for x86_64 with its x86 and x32 sub-architectures takes
// libseccomp tens of milliseconds, so the program is compiled once per distinct rule
// list and kept in a cache file TuppRuntime names after a hash of the rules (in tupp's
// state directory, or the container's runtime directory): later starts, restarts and
// execs read it back. A cache file that is not root's own, is writable by others, or
// fails its checksum is ignored and rewritten.
//
// The filter is prepared in the container's init (or exec's child) itself: libseccomp's
// working memory dies with exec, instead of staying dirty in the resident supervisor.
// The init does it while it waits for "go", so the work overlaps the engine's network
// setup. Loading the exported program is one seccomp(2) call, with no library code
// between it and exec.
//
// Syscall names this libseccomp does not know are skipped, as runc does: a profile
// written for a newer kernel still loads, and what it names cannot be called here anyway.
#include "shim.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int seccomp_parse_action(const char *text, unsigned *action) {
    char *end;
    if (!strcmp(text, "allow")) *action = SCMP_ACT_ALLOW;
    else if (!strcmp(text, "trap")) *action = SCMP_ACT_TRAP;
    else if (!strcmp(text, "log")) *action = SCMP_ACT_LOG;
    else if (!strcmp(text, "kill-thread")) *action = SCMP_ACT_KILL_THREAD;
    else if (!strcmp(text, "kill-process")) *action = SCMP_ACT_KILL_PROCESS;
    else if (!strncmp(text, "errno:", 6) || !strncmp(text, "trace:", 6)) {
        errno = 0;
        unsigned long value = strtoul(text + 6, &end, 10);
        if (errno || end == text + 6 || *end || value > 0xffff) return -1;
        *action = text[0] == 'e' ? SCMP_ACT_ERRNO(value) : SCMP_ACT_TRACE(value);
    } else {
        return -1;
    }
    return 0;
}

static int parse_op(const char *text) {
    static const char *names[] = {"ne", "lt", "le", "eq", "ge", "gt", "me"};
    static const int ops[] = {SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(text, names[i])) return ops[i];
    return -1;
}

int seccomp_parse_rule(const char *text, struct shim_seccomp_rule *rule) {
    char copy[512];
    if (snprintf(copy, sizeof copy, "%s", text) >= (int)sizeof copy) return -1;
    memset(rule, 0, sizeof *rule);
    char *save = NULL;
    char *action = strtok_r(copy, " ", &save);
    char *name = strtok_r(NULL, " ", &save);
    if (!action || !name || seccomp_parse_action(action, &rule->action) < 0) return -1;
    if (snprintf(rule->syscall, sizeof rule->syscall, "%s", name) >= (int)sizeof rule->syscall) return -1;
    for (char *index; (index = strtok_r(NULL, " ", &save));) {
        char *op = strtok_r(NULL, " ", &save), *value = strtok_r(NULL, " ", &save), *value_two = strtok_r(NULL, " ", &save);
        if (!op || !value || !value_two || rule->argc >= SHIM_MAX_SECCOMP_ARGS) return -1;
        struct shim_seccomp_arg *arg = &rule->args[rule->argc++];
        char *end;
        errno = 0;
        unsigned long i = strtoul(index, &end, 10);
        if (errno || *end || i > 5) return -1;
        arg->index = (unsigned)i;
        if ((arg->op = parse_op(op)) < 0) return -1;
        arg->value = strtoull(value, &end, 10);
        if (errno || *end) return -1;
        arg->value_two = strtoull(value_two, &end, 10);
        if (errno || *end) return -1;
    }
    return 0;
}

/// libseccomp reports errors as negative errno values.
static int library_failure(struct shim_failure *failure, int rc, const char *op, const char *object) {
    failure_set(failure, -rc, op, "libseccomp", "%s", object);
    return -1;
}

int seccomp_compile(const struct shim_seccomp *seccomp, struct shim_filter *filter, struct shim_failure *failure) {
    filter->program = NULL;
    filter->length = 0;
    if (!seccomp->enabled) return 0;

    scmp_filter_ctx ctx = seccomp_init(seccomp->default_action);
    if (!ctx) {
        failure_set(failure, ENOMEM, "create", "libseccomp", "the seccomp filter");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < seccomp->archc; i++) {
        uint32_t arch = seccomp_arch_resolve_name(seccomp->arches[i]);
        if (!arch) continue;  // an architecture this libseccomp does not know cannot run here either
        rc = seccomp_arch_add(ctx, arch);
        if (rc < 0 && rc != -EEXIST) {
            library_failure(failure, rc, "add architecture", seccomp->arches[i]);
            goto fail;
        }
    }
    // The rules are checked in the filter's own order (libseccomp sorts them); a
    // balanced tree keeps the cost of a syscall near log2(rules) comparisons.
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (int i = 0; i < seccomp->rulec; i++) {
        struct shim_seccomp_rule rule;
        if (seccomp_parse_rule(seccomp->rules[i], &rule) < 0) {
            failure_set(failure, EINVAL, "parse", NULL, "seccomp rule \"%s\"", seccomp->rules[i]);
            goto fail;
        }
        int nr = seccomp_syscall_resolve_name(rule.syscall);
        if (nr == __NR_SCMP_ERROR) continue;
        struct scmp_arg_cmp args[SHIM_MAX_SECCOMP_ARGS];
        for (int k = 0; k < rule.argc; k++)
            args[k] = (struct scmp_arg_cmp){.arg = rule.args[k].index, .op = (enum scmp_compare)rule.args[k].op,
                                            .datum_a = rule.args[k].value, .datum_b = rule.args[k].value_two};
        rc = seccomp_rule_add_array(ctx, rule.action, nr, (unsigned)rule.argc, args);
        // -EACCES: the rule's action is the default one (nothing to add); -EOPNOTSUPP /
        // -EDOM: a syscall or comparison one of the added architectures cannot express
        // (a 64-bit comparison on x86), as libseccomp reports it for that architecture.
        if (rc < 0 && rc != -EACCES && rc != -EOPNOTSUPP && rc != -EDOM) {
            library_failure(failure, rc, "add seccomp rule", seccomp->rules[i]);
            goto fail;
        }
    }

    // libseccomp 2.5 exports to a descriptor only: an anonymous memory file, read back.
    int fd = (int)syscall(SYS_memfd_create, "tupp-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        failure_set(failure, errno, "create", NULL, "memfd for the seccomp filter");
        goto fail;
    }
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) {
        close(fd);
        library_failure(failure, rc, "export", "the seccomp filter as BPF");
        goto fail;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) || size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
        close(fd);
        failure_set(failure, E2BIG, "export", "more than BPF_MAXINSNS instructions", "the seccomp filter (%lld bytes)", (long long)size);
        goto fail;
    }
    filter->program = malloc((size_t)size);
    if (!filter->program || pread(fd, filter->program, (size_t)size, 0) != size) {
        failure_set(failure, errno ? errno : EIO, "read back", NULL, "the exported seccomp filter");
        close(fd);
        free(filter->program);
        filter->program = NULL;
        goto fail;
    }
    close(fd);
    filter->length = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    seccomp_release(ctx);
    return 0;
fail:
    seccomp_release(ctx);
    return -1;
}

// ---- the cache file: "tuppbpf1", u32 instruction count, u64 FNV-1a of the program, program

static const char cache_magic[8] = {'t', 'u', 'p', 'p', 'b', 'p', 'f', '1'};

struct cache_header {
    char magic[8];
    uint32_t count;
    uint32_t reserved;
    uint64_t checksum;
};

static uint64_t fnv1a(const void *data, size_t size) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = data; size--; p++) hash = (hash ^ *p) * 0x100000001b3ULL;
    return hash;
}

/// 0 with `filter` filled from a valid cache file; -1 when there is none to trust.
static int cache_read(const char *path, struct shim_filter *filter) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    struct cache_header header;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) ||
        pread(fd, &header, sizeof header, 0) != (ssize_t)sizeof header || memcmp(header.magic, cache_magic, 8) ||
        header.count == 0 || header.count > BPF_MAXINSNS ||
        st.st_size != (off_t)(sizeof header + header.count * sizeof(struct sock_filter))) {
        close(fd);
        return -1;
    }
    size_t size = header.count * sizeof(struct sock_filter);
    void *program = malloc(size);
    if (!program || pread(fd, program, size, sizeof header) != (ssize_t)size || fnv1a(program, size) != header.checksum) {
        free(program);
        close(fd);
        return -1;
    }
    close(fd);
    filter->program = program;
    filter->length = (unsigned short)header.count;
    return 0;
}

/// Stores `filter` at `path` (temp file + rename: readers see a whole file or none).
/// Best effort: a start never fails because the cache could not be written.
static void cache_write(const char *path, const struct shim_filter *filter) {
    char temp[4096];
    if (snprintf(temp, sizeof temp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof temp) return;
    int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return;
    size_t size = filter->length * sizeof(struct sock_filter);
    struct cache_header header = {.count = filter->length, .checksum = fnv1a(filter->program, size)};
    memcpy(header.magic, cache_magic, 8);
    int rc = write_all(fd, &header, sizeof header) | write_all(fd, filter->program, size);
    close(fd);
    if (rc < 0 || rename(temp, path) < 0) unlink(temp);
}

int seccomp_prepare(const struct shim_seccomp *seccomp, struct shim_filter *filter, struct shim_failure *failure) {
    if (seccomp->enabled && seccomp->cache && cache_read(seccomp->cache, filter) == 0) return 0;
    if (seccomp_compile(seccomp, filter, failure) < 0) return -1;
    if (seccomp->cache && filter->length) cache_write(seccomp->cache, filter);
    return 0;
}

int seccomp_load_filter(const struct shim_filter *filter, struct shim_failure *failure) {
    if (!filter->length) return 0;
    struct sock_fprog program = {.len = filter->length, .filter = filter->program};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) < 0) {
        failure_set(failure, errno, "load", NULL, "the seccomp filter (%u instructions)", (unsigned)filter->length);
        return -1;
    }
    return 0;
}
