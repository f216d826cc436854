#ifndef TUPP_CGROUP_H
#define TUPP_CGROUP_H

#include <stddef.h>
#include <stdint.h>

/// Device types and access bits of a device rule (linux/bpf.h BPF_DEVCG_*), repeated so
/// Swift sees them without the kernel header.
#define TUPP_DEVICE_BLOCK 1
#define TUPP_DEVICE_CHAR 2
#define TUPP_DEVICE_MKNOD 1
#define TUPP_DEVICE_READ 2
#define TUPP_DEVICE_WRITE 4

/// One allowed device access: a type (TUPP_DEVICE_BLOCK / _CHAR, 0 for both), major and
/// minor (-1 for any) and the access bits it allows.
struct tupp_device_rule {
    uint32_t type;
    int64_t major;
    int64_t minor;
    uint32_t access;
};

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program that allows exactly `rules` — every other
/// open or mknod of a device fails with EPERM. Returns the program's descriptor, or -1
/// with errno set and the verifier's explanation (if any) in `log`.
///
/// Why C: the program is built from struct bpf_insn with the kernel's opcode constants,
/// and bpf(2) takes union bpf_attr — a syscall without a glibc wrapper and a union Swift
/// imports awkwardly. This is what runc and crun do for cgroup v2 device policies.
int tupp_device_policy_load(const struct tupp_device_rule *rules, size_t count, char *log, size_t log_size);

/// Attaches a loaded device program to the cgroup v2 directory `cgroup_fd`
/// (BPF_F_ALLOW_MULTI: programs of parent cgroups keep applying). The attachment holds
/// the program; it goes away with the cgroup. Returns 0, or -1 with errno set.
int tupp_device_policy_attach(int cgroup_fd, int program_fd);

#endif
