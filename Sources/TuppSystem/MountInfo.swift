/// One line of /proc/PID/mountinfo (proc(5)).
public struct MountInfo: Equatable, Sendable {
    public var id: Int
    public var parentID: Int
    /// "major:minor" of the filesystem's device.
    public var device: String
    /// The path inside the filesystem that is mounted (e.g. "/containers/web" for a subvolume).
    public var root: String
    public var mountPoint: String
    public var options: [String]
    /// Propagation tags: "shared:N", "master:N", "propagate_from:N", "unbindable".
    public var propagation: [String]
    public var fsType: String
    public var source: String
    public var superOptions: [String]

    /// All mounts seen by `pid` ("self" by default).
    public static func read(pid: String = "self") throws(SystemError) -> [MountInfo] {
        guard let text = try Files.readText("/proc/\(pid)/mountinfo") else {
            throw SystemError.failure("read mount table", "/proc/\(pid)/mountinfo", "process not found")
        }
        return parse(text)
    }

    public static func parse(_ text: String) -> [MountInfo] {
        text.split(separator: "\n").compactMap { parseLine(Substring($0)) }
    }

    static func parseLine(_ line: Substring) -> MountInfo? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 4,
              let id = Int(fields[0]), let parent = Int(fields[1]) else { return nil }
        return MountInfo(
            id: id, parentID: parent, device: String(fields[2]),
            root: unescape(fields[3]), mountPoint: unescape(fields[4]),
            options: fields[5].split(separator: ",").map(String.init),
            propagation: fields[6..<dash].map(String.init),
            fsType: String(fields[dash + 1]), source: unescape(fields[dash + 2]),
            superOptions: fields[dash + 3].split(separator: ",").map(String.init))
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo octal.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Mounts at `path` or below it.
    public static func mounts(under path: String, in table: [MountInfo]) -> [MountInfo] {
        let prefix = path.hasSuffix("/") ? path : path + "/"
        return table.filter { $0.mountPoint == path || $0.mountPoint.hasPrefix(prefix) }
    }
}
