import CTuppSys
import Glibc
import TuppSystem

/// What a test compares between two trees: every path with its type, mode, owner,
/// content or link target, plus which paths share an inode (hard link sets).
struct TreeSnapshot: Equatable {
    struct Node: Equatable, CustomStringConvertible {
        var type: String
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var content: [UInt8]?
        var linkTarget: String?
        var mtime: Int?

        var description: String {
            "\(type) \(String(mode, radix: 8)) \(uid):\(gid)\(content.map { " \($0.count)B" } ?? "")\(linkTarget.map { " → \($0)" } ?? "")\(mtime.map { " @\($0)" } ?? "")"
        }
    }

    var nodes: [String: Node] = [:]
    var hardlinkSets: Set<Set<String>> = []

    /// `withMtimes`: record mtimes of non-directories too.
    init(_ root: String, withMtimes: Bool = false) throws {
        var byInode: [UInt64: Set<String>] = [:]
        func visit(_ relative: String) throws {
            let path = relative.isEmpty ? root : "\(root)/\(relative)"
            guard let st = try Files.status(path) else { return }
            var node = Node(type: "?", mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid)
            switch st.st_mode & S_IFMT {
            case S_IFDIR: node.type = "dir"
            case S_IFREG:
                node.type = "file"
                node.content = try Files.read(path) ?? []
            case S_IFLNK:
                node.type = "symlink"
                var buffer = [CChar](repeating: 0, count: 4097)
                let n = readlink(path, &buffer, 4096)
                node.linkTarget = String(decoding: buffer[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                node.mode = 0
            case S_IFIFO: node.type = "fifo"
            case S_IFCHR: node.type = "chr"
            case S_IFBLK: node.type = "blk"
            default: node.type = "other"
            }
            if withMtimes && node.type != "dir" { node.mtime = st.st_mtim.tv_sec }
            if !relative.isEmpty { nodes[relative] = node }
            if node.type != "dir" && st.st_nlink > 1 { byInode[UInt64(st.st_ino), default: []].insert(relative) }
            if node.type == "dir" {
                for name in try Files.list(path) { try visit(relative.isEmpty ? name : "\(relative)/\(name)") }
            }
        }
        try visit("")
        hardlinkSets = Set(byInode.values.filter { $0.count > 1 })
    }

    /// Human-readable differences, empty when equal.
    func differences(from other: TreeSnapshot) -> [String] {
        var out: [String] = []
        for key in Set(nodes.keys).union(other.nodes.keys).sorted() {
            let a = nodes[key], b = other.nodes[key]
            if a != b { out.append("\(key): \(a?.description ?? "absent") vs \(b?.description ?? "absent")") }
        }
        if hardlinkSets != other.hardlinkSets {
            out.append("hard link sets: \(hardlinkSets.map { $0.sorted() }) vs \(other.hardlinkSets.map { $0.sorted() })")
        }
        return out
    }
}

/// Extended attribute value of `path` (not following a final symlink), nil when absent.
func xattr(_ path: String, _ name: String) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = lgetxattr(path, name, &buffer, buffer.count)
    return n < 0 ? nil : Array(buffer[0..<n])
}

func symlinkTarget(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink(path, &buffer, 4096)
    return n < 0 ? nil : String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
