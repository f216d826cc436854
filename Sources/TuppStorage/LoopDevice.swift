import CTuppSys
import Glibc
import TuppBase
import TuppSystem

/// Loop devices, attached by tupp itself through /dev/loop-control (no losetup).
enum LoopDevice {
    /// Attaches `file` to a free loop device with LO_FLAGS_AUTOCLEAR: the kernel
    /// detaches it when the last user goes away — the mount on success, or the returned
    /// descriptor if the caller fails before mounting. Returns "/dev/loopN" and its fd.
    static func attach(_ file: String) throws(SystemError) -> (path: String, fd: FileDescriptor) {
        let backing = try FileDescriptor.open(file, O_RDWR)
        let control = try FileDescriptor.open("/dev/loop-control", O_RDWR)
        // Another process may grab the same free device between GET_FREE and CONFIGURE;
        // the loser sees EBUSY and asks again.
        var lastError = SystemError.failure("attach loop device", file, "no free loop device")
        for _ in 0..<32 {
            let number = try Errno.check("find free loop device", "/dev/loop-control") {
                tupp_loop_get_free(control.rawValue)
            }
            let path = "/dev/loop\(number)"
            let rawLoop = Glibc.open(path, O_RDWR | O_CLOEXEC)
            if rawLoop < 0 {
                let code = errno
                lastError = SystemError("open loop device", path, errno: code)
                if code == ENOENT || code == ENXIO { continue }
                throw lastError
            }
            let loop = FileDescriptor(adopting: rawLoop)
            if tupp_loop_configure(loop.rawValue, backing.rawValue, UInt32(TUPP_LO_FLAGS_AUTOCLEAR), file) == 0 {
                return (path, loop)
            }
            let code = errno
            lastError = SystemError("attach loop device", "\(path) ← \(file)", errno: code)
            if code != EBUSY { throw lastError }
        }
        throw lastError
    }

    /// The backing file of /dev/loopN from sysfs, nil when the device is not bound.
    static func backingFile(of device: String) -> String? {
        let name = Paths.basename(device)
        guard name.hasPrefix("loop"),
              let text = try? Files.readText("/sys/block/\(name)/loop/backing_file", limit: 8192) else { return nil }
        let path = text.trimmingCharacters()
        return path.isEmpty ? nil : path
    }

    /// Every loop device whose backing file is `file` (compared as canonical paths).
    static func devices(backing file: String) -> [String] {
        let target = Paths.canonical(file) ?? file
        let names = (try? Files.list("/sys/block")) ?? []
        return names.filter { $0.hasPrefix("loop") }.compactMap { name in
            backingFile(of: name) == target ? "/dev/\(name)" : nil
        }
    }

    /// Re-reads the backing file's size (after the file grew).
    static func refreshCapacity(_ device: String) throws(SystemError) {
        let fd = try FileDescriptor.open(device, O_RDONLY)
        try Errno.check("refresh loop device capacity", device) { tupp_loop_set_capacity(fd.rawValue) }
    }

    /// Waits up to `timeout` seconds for autoclear to detach `device` from `file`,
    /// then detaches it explicitly.
    static func waitForDetach(_ device: String, from file: String, timeout: Double = 2) throws(SystemError) {
        let target = Paths.canonical(file) ?? file
        let deadline = Monotonic.nanoseconds() + UInt64(timeout * 1e9)
        while backingFile(of: device) == target {
            if Monotonic.nanoseconds() >= deadline {
                let fd = try FileDescriptor.open(device, O_RDONLY)
                if tupp_loop_clear(fd.rawValue) != 0 && errno != ENXIO {
                    let code = errno
                    throw SystemError("detach loop device", "\(device) ← \(file)", errno: code,
                                      detail: code == EBUSY ? "the filesystem is still in use — mounted in another mount namespace (a process that unshared its mounts while the pool was mounted)?" : nil)
                }
                return
            }
            usleep(5_000)
        }
    }
}
