#define _GNU_SOURCE
#include "tupp_net.h"

#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

size_t tupp_netlink_extack_message(const void *error, char *buffer, size_t size) {
    if (size == 0) return 0;
    buffer[0] = '\0';
    const struct nlmsgerr *err = error;
    const struct nlmsghdr *header = (const struct nlmsghdr *)((const char *)err - NLMSG_HDRLEN);
    if (!(header->nlmsg_flags & NLM_F_ACK_TLVS)) return 0;

    // The error struct embeds the request's header; unless capped, the request's
    // payload follows it. The TLVs come after that.
    size_t offset = sizeof(*err);
    if (!(header->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - NLMSG_HDRLEN;
    if (header->nlmsg_len < NLMSG_HDRLEN + offset) return 0;
    size_t remaining = header->nlmsg_len - NLMSG_HDRLEN - offset;
    const char *cursor = (const char *)err + offset;

    while (remaining >= NLA_HDRLEN) {
        const struct nlattr *attr = (const struct nlattr *)cursor;
        if (attr->nla_len < NLA_HDRLEN || attr->nla_len > remaining) break;
        if ((attr->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
            size_t length = strnlen((const char *)attr + NLA_HDRLEN, attr->nla_len - NLA_HDRLEN);
            if (length >= size) length = size - 1;
            memcpy(buffer, (const char *)attr + NLA_HDRLEN, length);
            buffer[length] = '\0';
            return length;
        }
        size_t step = NLA_ALIGN(attr->nla_len);
        if (step >= remaining) break;
        cursor += step;
        remaining -= step;
    }
    return 0;
}

int tupp_netlink_enable_extack(int fd) {
    int on = 1;
    if (setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on) != 0) return -1;
    return setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
}
