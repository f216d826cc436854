// The seccomp filter: the spec carries a normalized rule list (TuppRuntime resolved the
// profile's conditions against the container's capabilities and this host), libseccomp
// turns it into classic BPF, and the process loads that as its very last step before
// exec — after no_new_privs, which lets an unprivileged process install a filter.
//
// The filter is compiled in the container's init (or exec's child) itself: libseccomp's
// working memory dies with exec, instead of staying dirty in the resident supervisor.
// The init compiles while it waits for "go", so the work overlaps the engine's network
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
#include <sys/mman.h>
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

int seccomp_load_filter(const struct shim_filter *filter, struct shim_failure *failure) {
    if (!filter->length) return 0;
    struct sock_fprog program = {.len = filter->length, .filter = filter->program};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) < 0) {
        failure_set(failure, errno, "load", NULL, "the seccomp filter (%u instructions)", (unsigned)filter->length);
        return -1;
    }
    return 0;
}
