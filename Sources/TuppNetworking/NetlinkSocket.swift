import CNLRoute
import CTuppSys
import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// One libnl `nl_sock` on NETLINK_ROUTE, bound to the network namespace of the thread
/// that created it. Not thread-safe: `NetlinkSession` serialises access.
///
/// Kernel errors are captured in full: libnl's own error codes are coarse (ENODEV and
/// ENOENT both become "object not found"), so a custom error callback records the
/// kernel's errno and its extended-ack text ("Invalid MTU") for the `SystemError`.
final class NetlinkSocket {
    let handle: OpaquePointer
    /// "host" or the netns path, for error messages.
    let namespace: String
    private let kernelError: KernelErrorCapture

    /// Creates and connects the socket in the calling thread's network namespace.
    init(namespace: String) throws(SystemError) {
        guard let handle = nl_socket_alloc() else {
            throw SystemError("allocate netlink socket", namespace, errno: ENOMEM)
        }
        let rc = nl_connect(handle, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(handle)
            throw SystemError("connect netlink socket", namespace, errno: LibNL.errnoValue(rc),
                              detail: LibNL.describe(rc))
        }
        // Best effort: without extended acks errors still carry the errno.
        _ = tupp_netlink_enable_extack(nl_socket_get_fd(handle))
        // A fixed receive buffer instead of libnl's default MSG_PEEK-then-read: half the
        // recvmsg calls. The kernel builds dump chunks of at most 32 KiB, so 64 KiB
        // never truncates.
        _ = nl_socket_set_msg_buf_size(handle, 65536)
        nl_socket_disable_msg_peek(handle)
        self.handle = handle
        self.namespace = namespace
        kernelError = KernelErrorCapture()
        nl_socket_modify_err_cb(handle, NL_CB_CUSTOM, kernelErrorCallback,
                                Unmanaged.passUnretained(kernelError).toOpaque())
    }

    deinit { nl_socket_free(handle) }

    /// Runs one libnl call that returns 0 or a negative NLE code; a failure becomes a
    /// `SystemError` naming the operation, the object, and the kernel's errno and text.
    @discardableResult
    func perform(_ operation: @autoclosure () -> String, _ object: @autoclosure () -> String,
                 _ call: () -> Int32) throws(SystemError) -> Int32 {
        kernelError.reset()
        let rc = call()
        guard rc < 0 else { return rc }
        throw failure(operation(), object(), rc)
    }

    /// The errno behind the last failed call: the kernel's when it sent one.
    func failure(_ operation: String, _ object: String, _ rc: Int32) -> SystemError {
        var detail = "libnl: \(LibNL.describe(rc))"
        if let message = kernelError.message { detail = "kernel: \(message)" }
        let code = kernelError.code != 0 ? kernelError.code : LibNL.errnoValue(rc)
        return SystemError(operation, located(object), errno: code, detail: detail)
    }

    /// "eth0 (netns /proc/42/ns/net)": an object name with the namespace it lives in.
    func located(_ object: String) -> String {
        "\(object) (\(namespace == "host" ? "host netns" : "netns \(namespace)"))"
    }
}

/// What the kernel said in the last NLMSG_ERROR; written by the libnl callback.
final class KernelErrorCapture {
    var code: Int32 = 0
    var message: String?

    func reset() {
        code = 0
        message = nil
    }
}

/// libnl's error callback: records errno and extended-ack text, then stops the receive
/// loop so libnl returns its own (coarser) code to the caller.
private let kernelErrorCallback: nl_recvmsg_err_cb_t = { _, error, argument in
    guard let error, let argument else { return Int32(NL_STOP.rawValue) }
    let capture = Unmanaged<KernelErrorCapture>.fromOpaque(argument).takeUnretainedValue()
    capture.code = -error.pointee.error
    var buffer = [CChar](repeating: 0, count: 256)
    let length = tupp_netlink_extack_message(error, &buffer, buffer.count)
    if length > 0 {
        capture.message = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    return Int32(NL_STOP.rawValue)
}

/// libnl error codes and address conversions.
enum LibNL {
    /// nl_geterror text with the NLE name.
    static func describe(_ rc: Int32) -> String {
        String(cString: nl_geterror(rc))
    }

    /// The errno closest to a libnl NLE_* code, for failures the kernel did not report
    /// itself (allocation, message size, protocol confusion).
    static func errnoValue(_ rc: Int32) -> Int32 {
        switch -rc {
        case NLE_NOMEM: ENOMEM
        case NLE_EXIST: EEXIST
        case NLE_INVAL: EINVAL
        case NLE_RANGE: ERANGE
        case NLE_MSGSIZE: EMSGSIZE
        case NLE_OPNOTSUPP: EOPNOTSUPP
        case NLE_AF_NOSUPPORT: EAFNOSUPPORT
        case NLE_OBJ_NOTFOUND: ENOENT
        case NLE_NOADDR: EADDRNOTAVAIL
        case NLE_BUSY: EBUSY
        case NLE_NOACCESS: EACCES
        case NLE_PERM: EPERM
        case NLE_NODEV: ENODEV
        case NLE_AGAIN, NLE_DUMP_INTR: EAGAIN
        case NLE_INTR: EINTR
        case NLE_BAD_SOCK: EBADF
        default: EIO
        }
    }

    /// A new nl_addr (AF_INET) holding `address` with `prefixLength`; the caller puts it.
    static func address(_ address: IPv4Address, prefixLength: Int = 32) -> OpaquePointer {
        var octets = address.octets
        let addr = nl_addr_build(AF_INET, &octets, 4)!
        nl_addr_set_prefixlen(addr, Int32(prefixLength))
        return addr
    }

    /// A new nl_addr (AF_LLC, as libnl uses for link-layer addresses); the caller puts it.
    static func address(_ mac: MACAddress) -> OpaquePointer {
        var bytes = mac.bytes
        return nl_addr_build(AF_LLC, &bytes, 6)!
    }
}
