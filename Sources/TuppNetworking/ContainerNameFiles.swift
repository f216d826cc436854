import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// A container's /etc/hosts and /etc/resolv.conf: files tupp owns in the container's
/// runtime directory, bind-mounted read-only over the image's, and rewritten in place
/// when their inputs change — another container joins the network, the host's resolvers
/// move — without restarting anything.
public enum ContainerNameFiles {
    public static func hostsPath(runtimeDirectory: String) -> String { "\(runtimeDirectory)/hosts" }
    public static func resolvConfPath(runtimeDirectory: String) -> String { "\(runtimeDirectory)/resolv.conf" }

    /// The read-only bind mounts that put both files in place, for `ContainerConfig.mounts`.
    /// The files must exist before the container starts (`write`).
    public static func mounts(runtimeDirectory: String) -> [Mount] {
        [
            Mount(kind: .bind, source: hostsPath(runtimeDirectory: runtimeDirectory), target: "/etc/hosts", readonly: true),
            Mount(kind: .bind, source: resolvConfPath(runtimeDirectory: runtimeDirectory), target: "/etc/resolv.conf", readonly: true),
        ]
    }

    /// Makes `path` hold `content`, keeping its inode. Returns false when it already did.
    ///
    /// A bind mount pins the inode it was made from: replacing the file by rename (the
    /// atomic way) would leave the container reading the old one forever. So the file is
    /// rewritten where it is: the new bytes over the old from offset 0, then truncated to
    /// their length. A reader in between may see the new text followed by the old text's
    /// tail, never an empty file; libc re-reads these files whole on its next lookup.
    @discardableResult
    public static func write(_ path: String, _ content: String, mode: mode_t = 0o644) throws(SystemError) -> Bool {
        let bytes = Array(content.utf8)
        // O_NOFOLLOW: the runtime directory is tupp's, but never write through a symlink.
        let fd = try FileDescriptor.open(path, O_RDWR | O_CREAT | O_NOFOLLOW, mode: mode)
        var status = stat()
        try Errno.check("stat", path) { fstat(fd.rawValue, &status) }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw SystemError("write", path, errno: EINVAL, detail: "not a regular file")
        }
        if status.st_mode & 0o7777 != mode {
            try Errno.check("chmod", path) { fchmod(fd.rawValue, mode) }
        }
        if Int(status.st_size) == bytes.count, (try? fd.readAll(limit: bytes.count, describedAs: path)) == bytes {
            return false
        }
        var written = 0
        while written < bytes.count {
            let n = try Errno.check("write", path) {
                bytes.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress! + written, bytes.count - written, off_t(written)) }
            }
            written += n
        }
        try Errno.check("truncate", path) { ftruncate(fd.rawValue, off_t(bytes.count)) }
        return true
    }
}

extension ContainerNameFiles {
    /// The file's stamp: size, mtime, ctime. Any write changes ctime, which nothing can
    /// set back: a file whose stamp is the one recorded was not touched since.
    public static func stamp(_ path: String) throws(SystemError) -> String? {
        guard let st = try Files.status(path) else { return nil }
        return "\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec):\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
    }
}

extension ResolvConf {
    /// The host's /etc/resolv.conf (empty when absent) and systemd-resolved's upstream
    /// list (nil when absent).
    public static func readHost(hostPath: String = hostPath,
                                upstreamPath: String = resolvedUpstreamPath) throws(SystemError) -> (host: ResolverSettings, resolvedUpstream: ResolverSettings?) {
        let host = try Files.readText(hostPath, limit: 1 << 20).map(parse) ?? ResolverSettings()
        let upstream = try Files.readText(upstreamPath, limit: 1 << 20).map(parse)
        return (host, upstream)
    }
}
