import CTuppSys
import Glibc
import TuppManifest
import TuppSystem

extension UserSpec {
    /// Resolves against the text of the container's /etc/passwd and /etc/group (nil
    /// when the file is missing), as runc does: a numeric user not in passwd is that uid
    /// with gid 0 and home /; a name must be there. The supplementary groups are the
    /// groups that list the user's name as a member.
    public func resolve(passwd: String?, group groupFile: String?) throws(SystemError) -> ResolvedUser {
        let users = (passwd ?? "").split(separator: "\n").compactMap(PasswdEntry.init)
        let groups = (groupFile ?? "").split(separator: "\n").compactMap(GroupEntry.init)
        let entry: PasswdEntry?
        var uid: UInt32, gid: UInt32 = 0, home = "/"
        if let number = UInt32(user) {
            entry = users.first { $0.uid == number }
            uid = number
        } else {
            entry = users.first { $0.name == user }
            guard let entry else {
                throw SystemError.failure("resolve user", user, passwd == nil ? "the container has no /etc/passwd; give a numeric uid" : "no such user in the container's /etc/passwd")
            }
            uid = entry.uid
        }
        if let entry {
            gid = entry.gid
            home = entry.home
        } else if uid == 0 {
            home = "/root"
        }
        if let group {
            if let number = UInt32(group) {
                gid = number
            } else if let match = groups.first(where: { $0.name == group }) {
                gid = match.gid
            } else {
                throw SystemError.failure("resolve group", group, groupFile == nil ? "the container has no /etc/group; give a numeric gid" : "no such group in the container's /etc/group")
            }
        }
        var supplementary: [UInt32] = []
        if let name = entry?.name {
            for match in groups where match.members.contains(name) && !supplementary.contains(match.gid) {
                supplementary.append(match.gid)
            }
        }
        return ResolvedUser(uid: uid, gid: gid, groups: supplementary, home: home)
    }

    /// Resolves against `rootfs`/etc/passwd and /etc/group, opened inside the root
    /// (openat2 RESOLVE_IN_ROOT): a symlinked /etc in the image cannot point at the host's.
    public func resolve(inRoot rootfs: String) throws(SystemError) -> ResolvedUser {
        let root = try FileDescriptor.open(rootfs, O_RDONLY | O_DIRECTORY)
        func read(_ path: String) throws(SystemError) -> String? {
            let fd = tupp_openat2(root.rawValue, path, UInt64(O_RDONLY | O_CLOEXEC), 0, UInt64(TUPP_RESOLVE_IN_ROOT))
            if fd < 0 {
                if errno == ENOENT { return nil }
                throw SystemError("open", "\(rootfs)/\(path)")
            }
            let bytes = try FileDescriptor(adopting: fd).readAll(limit: 4 << 20, describedAs: "\(rootfs)/\(path)")
            return String(decoding: bytes, as: UTF8.self)
        }
        do {
            return try resolve(passwd: try read("etc/passwd"), group: try read("etc/group"))
        } catch {
            throw SystemError(error.operation, "\(error.object) (container root \(rootfs))", errno: error.code, detail: error.detail)
        }
    }
}

/// A user as the kernel knows it.
public struct ResolvedUser: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups (setgroups).
    public var groups: [UInt32]
    /// HOME.
    public var home: String

    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = [], home: String = "/") {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home
    }
}

/// name:password:uid:gid:gecos:home:shell
struct PasswdEntry {
    var name: String
    var uid: UInt32
    var gid: UInt32
    var home: String

    init?(_ line: Substring) {
        let fields = line.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count >= 7, !fields[0].isEmpty, !fields[0].hasPrefix("#"),
              let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return nil }
        name = String(fields[0])
        self.uid = uid
        self.gid = gid
        home = fields[5].hasPrefix("/") ? String(fields[5]) : "/"
    }
}

/// name:password:gid:member,member
struct GroupEntry {
    var name: String
    var gid: UInt32
    var members: [String]

    init?(_ line: Substring) {
        let fields = line.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count >= 4, !fields[0].isEmpty, !fields[0].hasPrefix("#"), let gid = UInt32(fields[2]) else { return nil }
        name = String(fields[0])
        self.gid = gid
        members = fields[3].split(separator: ",").map { String($0).trimmingSpaces }
    }
}
