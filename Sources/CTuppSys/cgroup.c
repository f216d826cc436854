#define _GNU_SOURCE
#include "tupp_cgroup.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// Instruction builders (the kernel's own BPF_* macros live in its private filter.h).
#define INSN(CODE, DST, SRC, OFF, IMM) ((struct bpf_insn){.code = (CODE), .dst_reg = (DST), .src_reg = (SRC), .off = (OFF), .imm = (IMM)})
#define LOAD_U32(DST, SRC, OFF) INSN(BPF_LDX | BPF_MEM | BPF_W, DST, SRC, OFF, 0)
#define ALU32_IMM(OP, DST, IMM) INSN(BPF_ALU | (OP) | BPF_K, DST, 0, 0, IMM)
#define MOV32_REG(DST, SRC) INSN(BPF_ALU | BPF_MOV | BPF_X, DST, SRC, 0, 0)
#define MOV64_IMM(DST, IMM) INSN(BPF_ALU64 | BPF_MOV | BPF_K, DST, 0, 0, IMM)
#define JNE_IMM(DST, IMM, OFF) INSN(BPF_JMP | BPF_JNE | BPF_K, DST, 0, OFF, IMM)
#define JNE_REG(DST, SRC, OFF) INSN(BPF_JMP | BPF_JNE | BPF_X, DST, SRC, OFF, 0)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

enum { ALL_ACCESS = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE };

/// Appends one rule: a block of checks that falls through to "allow" when every check
/// matches, and jumps past the block to the next rule at the first that does not.
static size_t append_rule(struct bpf_insn *out, const struct tupp_device_rule *rule) {
    struct bpf_insn block[8];
    size_t n = 0;
    // Registers from the prologue: r2 type, r3 requested access, r4 major, r5 minor.
    // Jump offsets are patched below once the block's length is known (marked with -1).
    if (rule->type) block[n++] = JNE_IMM(BPF_REG_2, (int32_t)rule->type, -1);
    if ((rule->access & ALL_ACCESS) != ALL_ACCESS) {
        // Allowed only when every requested bit is one the rule grants.
        block[n++] = MOV32_REG(BPF_REG_1, BPF_REG_3);
        block[n++] = ALU32_IMM(BPF_AND, BPF_REG_1, (int32_t)rule->access);
        block[n++] = JNE_REG(BPF_REG_1, BPF_REG_3, -1);
    }
    if (rule->major >= 0) block[n++] = JNE_IMM(BPF_REG_4, (int32_t)rule->major, -1);
    if (rule->minor >= 0) block[n++] = JNE_IMM(BPF_REG_5, (int32_t)rule->minor, -1);
    block[n++] = MOV64_IMM(BPF_REG_0, 1);
    block[n++] = EXIT();
    for (size_t i = 0; i < n; i++) {
        if (block[i].off == -1) block[i].off = (int16_t)(n - i - 1);
        out[i] = block[i];
    }
    return n;
}

int tupp_device_policy_load(const struct tupp_device_rule *rules, size_t count, char *log, size_t log_size) {
    if (log_size) log[0] = '\0';
    if (count > 1024) {
        errno = E2BIG;
        return -1;
    }
    struct bpf_insn *program = calloc(6 + count * 8 + 2, sizeof *program);
    if (!program) return -1;
    size_t n = 0;
    // struct bpf_cgroup_dev_ctx: access_type = (access << 16) | type, major, minor.
    program[n++] = LOAD_U32(BPF_REG_2, BPF_REG_1, 0);
    program[n++] = ALU32_IMM(BPF_AND, BPF_REG_2, 0xFFFF);
    program[n++] = LOAD_U32(BPF_REG_3, BPF_REG_1, 0);
    program[n++] = ALU32_IMM(BPF_RSH, BPF_REG_3, 16);
    program[n++] = LOAD_U32(BPF_REG_4, BPF_REG_1, 4);
    program[n++] = LOAD_U32(BPF_REG_5, BPF_REG_1, 8);
    for (size_t i = 0; i < count; i++) n += append_rule(program + n, &rules[i]);
    program[n++] = MOV64_IMM(BPF_REG_0, 0);  // no rule matched: refused
    program[n++] = EXIT();

    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)program;
    load.insn_cnt = (uint32_t)n;
    load.license = (uint64_t)(uintptr_t)"Apache-2.0";
    int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
    if (fd < 0 && (errno == EACCES || errno == EINVAL) && log_size > 1) {
        // Load again with the verifier's log, which says why it refused.
        int saved = errno;
        load.log_buf = (uint64_t)(uintptr_t)log;
        load.log_size = (uint32_t)log_size;
        load.log_level = 1;
        (void)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
        errno = saved;
    }
    int saved = errno;
    free(program);
    errno = saved;
    return fd;
}

int tupp_device_policy_attach(int cgroup_fd, int program_fd) {
    union bpf_attr attach;
    memset(&attach, 0, sizeof attach);
    attach.target_fd = (uint32_t)cgroup_fd;
    attach.attach_bpf_fd = (uint32_t)program_fd;
    attach.attach_type = BPF_CGROUP_DEVICE;
    attach.attach_flags = BPF_F_ALLOW_MULTI;
    return (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof attach);
}
