import Glibc
import TuppSystem

/// What a file, directory or symlink gets just by being created, so that `RootfsWriter`
/// calls fchown and fchmod only where they change something. GNU tar calls both for every
/// file; an image is mostly root-owned 0644/0755 entries, which a root process creating
/// them with that mode already has — two syscalls fewer per entry, each of which is an
/// inode update on btrfs.
///
/// The kernel gives a new entry the creator's fsuid and fsgid and `mode & ~umask`, unless
/// its parent directory is setgid (the group is the parent's, and a new directory is setgid
/// too) or carries a default ACL (which replaces the umask). The writer cannot see those
/// cheaply, so it trusts these defaults only in a root on btrfs that was empty when it
/// started and only until an entry could have changed them: a setgid directory or a
/// `system.posix_acl_default` attribute; from then on it sets owner and mode every time.
struct CreationDefaults: Equatable {
    /// Owner of what this process creates (euid, egid: tupp does not use setfsuid).
    var uid: uid_t
    var gid: gid_t
    /// The process's umask; nil when it could not be read (then every mode is set).
    var umask: mode_t?

    /// Whether an entry created in a parent without setgid or default ACL already has
    /// `uid` and `gid`.
    func ownerIsSet(uid: uid_t, gid: gid_t) -> Bool {
        uid == self.uid && gid == self.gid
    }

    /// The mode to create an entry with when creating it with that mode gives it exactly
    /// `permissions`; nil when a chmod is needed: setuid, setgid and sticky bits (chown and
    /// writes clear them, so they are set last) or bits the umask would drop.
    func creationMode(for permissions: mode_t) -> mode_t? {
        guard let umask, permissions & 0o7000 == 0, permissions & umask == 0 else { return nil }
        return permissions
    }

    /// This process's defaults; the umask is read from /proc/self/status, because umask(2)
    /// can only be read by setting it, which other threads would see.
    static func current() -> CreationDefaults {
        CreationDefaults(uid: geteuid(), gid: getegid(), umask: readUmask())
    }

    static func readUmask() -> mode_t? {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return umask(inStatus: buffer[..<n])
    }

    /// The "Umask:\t0022" line of /proc/PID/status (Linux 4.7+), as a mode; nil when the
    /// line is missing or its value is not an octal mode up to 0777.
    static func umask(inStatus status: ArraySlice<UInt8>) -> mode_t? {
        let key = Array("\nUmask:".utf8)
        guard let start = status.indices.first(where: { status[$0...].starts(with: key) }) else { return nil }
        let rest = status[(start + key.count)...]
        let line = rest.prefix { $0 != UInt8(ascii: "\n") }
        let value = String(decoding: line, as: UTF8.self).trimmingCharacters()
        guard let mode = mode_t(value, radix: 8), mode <= 0o777 else { return nil }
        return mode
    }
}
