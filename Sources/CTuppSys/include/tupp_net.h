#ifndef TUPP_NET_H
#define TUPP_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Copies the kernel's extended-ack text (NLMSGERR_ATTR_MSG, e.g. "MTU too small") out
/// of a netlink error message into `buffer` (NUL-terminated). `error` points at the
/// `struct nlmsgerr` libnl hands to its error callback. Returns the text's length, or 0
/// when the kernel sent none.
///
/// Why C: the TLVs sit after the error struct at offsets computed from the enclosing
/// `struct nlmsghdr` (which precedes `error` in memory) and depend on whether the
/// request was echoed (NLM_F_CAPPED); walking kernel structs by byte offset with the
/// kernel's own NLMSG_* / NLA_* macros is what C is for.
size_t tupp_netlink_extack_message(const void *error, char *buffer, size_t size);

/// setsockopt(SOL_NETLINK, NETLINK_EXT_ACK and NETLINK_CAP_ACK) on a netlink socket:
/// ask for the kernel's error text and do not echo the whole request back in errors.
/// Returns 0 or -1 with errno set.
///
/// Why C: the SOL_NETLINK / NETLINK_* constants live in kernel headers that Swift's
/// Glibc module does not include.
int tupp_netlink_enable_extack(int fd);

#endif
