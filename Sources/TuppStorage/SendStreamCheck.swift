import TuppSystem

/// Judges a btrfs send stream command by command before `btrfs receive` sees it.
///
/// btrfs-receive(8) warns that it does not validate streams: a crafted one can write
/// through `..` or create reflinks to any file of the filesystem. tupp runs receive
/// chrooted into a staging directory, which confines ordinary path operations; what the
/// chroot cannot confine are the parent snapshot and clone sources, which receive opens
/// from the mount's root. So a stream passes only when:
/// - it carries exactly one subvolume, named by a valid tag;
/// - its parent (an incremental stream's) is a snapshot of the volume being imported;
/// - clones come from the subvolume itself or from such a snapshot, by a path that
///   `cloneSourceIsSafe` resolves inside it without symlinks;
/// - every path it names is relative and has no `..`;
/// - it makes no device node (like image imports: the runtime provides /dev, and a
///   device node in a volume would be one a container can open).
/// The wire format (kernel-shared/send.h in btrfs-progs): "btrfs-stream\0", le32 version;
/// then commands of le32 length, le16 command, le32 crc and that many bytes of TLVs.
struct SendStreamCheck {
    static let magic = Array("btrfs-stream".utf8) + [0]
    static let headerSize = magic.count + 4
    static let commandHeaderSize = 10
    /// Far above the kernel's largest command (64 KiB in v1, ~144 KiB in v2).
    static let maximumCommandSize = 16 << 20

    enum Command: UInt16 {
        case subvolume = 1, snapshot = 2, mknod = 5, link = 10, clone = 16, end = 21
    }

    enum Attribute: UInt16 {
        case uuid = 1, path = 15, pathTo = 16, pathLink = 17, data = 19, cloneUUID = 20, clonePath = 22
    }

    /// 16-byte UUIDs of the snapshots an incremental stream may build on or clone from.
    let allowedParents: Set<[UInt8]>
    /// Whether `path` inside the snapshot with `uuid` names a file reached without
    /// symlinks (I/O, so injected; the snapshots are read-only, so the answer holds).
    let cloneSourceIsSafe: ([UInt8], String) -> Bool

    private(set) var version: UInt32 = 0
    /// The received subvolume's name: the tag it gets.
    private(set) var subvolumeName: String?
    private(set) var subvolumeUUID: [UInt8]?
    private(set) var parentUUID: [UInt8]?
    private(set) var ended = false

    init(allowedParents: Set<[UInt8]>, cloneSourceIsSafe: @escaping ([UInt8], String) -> Bool) {
        self.allowedParents = allowedParents
        self.cloneSourceIsSafe = cloneSourceIsSafe
    }

    struct Rejection: Error, Equatable, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    /// Checks the stream header (the first `headerSize` bytes).
    mutating func checkHeader(_ bytes: UnsafeRawBufferPointer) throws(Rejection) {
        guard bytes.count == Self.headerSize, Array(bytes.prefix(Self.magic.count)) == Self.magic else {
            throw Rejection(reason: "not a btrfs send stream (no \"btrfs-stream\" header)")
        }
        version = Self.le32(bytes, Self.magic.count)
        guard (1...3).contains(version) else { throw Rejection(reason: "send stream version \(version) is not supported") }
    }

    /// The payload length announced by a command header (`commandHeaderSize` bytes).
    static func payloadLength(ofCommandHeader bytes: UnsafeRawBufferPointer) throws(Rejection) -> Int {
        let length = Int(le32(bytes, 0))
        guard length <= maximumCommandSize else { throw Rejection(reason: "a command of \(length) bytes is not plausible") }
        return length
    }

    /// Checks one command: its header and payload.
    mutating func check(command header: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) throws(Rejection) {
        let number = UInt16(header[4]) | UInt16(header[5]) << 8
        guard !ended else { throw Rejection(reason: "data after the end command") }
        guard (1...26).contains(number) else { throw Rejection(reason: "unknown command \(number)") }
        let attributes = try Self.attributes(payload, version: version)
        let command = Command(rawValue: number)
        if subvolumeName == nil {
            guard command == .subvolume || command == .snapshot else {
                throw Rejection(reason: "the stream does not start with a subvolume")
            }
        } else if command == .subvolume || command == .snapshot {
            throw Rejection(reason: "the stream carries more than one subvolume; import one volume at a time")
        }
        for (type, value) in attributes {
            switch Attribute(rawValue: type) {
            case .path, .pathTo, .clonePath:
                try Self.checkRelative(value)
            case .pathLink where command == .link:
                try Self.checkRelative(value)  // a hard link's existing file (a symlink's target is just data)
            default:
                break
            }
        }
        switch command {
        case .subvolume, .snapshot:
            let name = String(decoding: attributes.first { $0.type == Attribute.path.rawValue }?.value ?? [], as: UTF8.self)
            do { try VolumeNames.validate(tag: name) } catch {
                throw Rejection(reason: "the subvolume's name '\(name)' is not a valid snapshot tag")
            }
            guard let uuid = Self.uuid(attributes, .uuid) else { throw Rejection(reason: "the subvolume has no UUID") }
            if command == .snapshot {
                guard let parent = Self.uuid(attributes, .cloneUUID), allowedParents.contains(parent) else {
                    throw Rejection(reason: "the stream is incremental, and its parent is not a snapshot of this volume; import the snapshot it was made against first")
                }
                parentUUID = parent
            }
            subvolumeName = name
            subvolumeUUID = uuid
        case .clone:
            guard let source = Self.uuid(attributes, .cloneUUID) else { throw Rejection(reason: "a clone without a source") }
            if source != subvolumeUUID {
                guard allowedParents.contains(source) else {
                    throw Rejection(reason: "a clone reads from a subvolume that is not a snapshot of this volume")
                }
                let path = String(decoding: attributes.first { $0.type == Attribute.clonePath.rawValue }?.value ?? [], as: UTF8.self)
                guard cloneSourceIsSafe(source, path) else {
                    throw Rejection(reason: "a clone source path '\(path)' leaves its snapshot or passes a symlink")
                }
            }
        case .mknod:
            let path = String(decoding: attributes.first { $0.type == Attribute.path.rawValue }?.value ?? [], as: UTF8.self)
            throw Rejection(reason: "the stream makes a device node '\(path)'; volumes hold no devices")
        case .end:
            ended = true
        default:
            break
        }
    }

    /// The TLVs of a payload. From version 2 on, the data attribute has no length: it is
    /// the rest of the command.
    static func attributes(_ payload: UnsafeRawBufferPointer, version: UInt32) throws(Rejection) -> [(type: UInt16, value: [UInt8])] {
        var result: [(type: UInt16, value: [UInt8])] = []
        var offset = 0
        while offset < payload.count {
            guard payload.count - offset >= 2 else { throw Rejection(reason: "a truncated attribute") }
            let type = UInt16(payload[offset]) | UInt16(payload[offset + 1]) << 8
            if version >= 2 && type == Attribute.data.rawValue { break }
            guard payload.count - offset >= 4 else { throw Rejection(reason: "a truncated attribute") }
            let length = Int(UInt16(payload[offset + 2]) | UInt16(payload[offset + 3]) << 8)
            offset += 4
            guard payload.count - offset >= length else { throw Rejection(reason: "an attribute longer than its command") }
            // Only what is judged is copied; file data is not.
            if type != Attribute.data.rawValue {
                result.append((type, Array(payload[offset..<offset + length])))
            }
            offset += length
        }
        return result
    }

    static func checkRelative(_ value: [UInt8]) throws(Rejection) {
        let text = String(decoding: value, as: UTF8.self)
        guard value.first != UInt8(ascii: "/"), !value.contains(0),
              !value.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual("..".utf8) }) else {
            throw Rejection(reason: "the path '\(text)' is absolute or has a '..' component")
        }
    }

    static func uuid(_ attributes: [(type: UInt16, value: [UInt8])], _ attribute: Attribute) -> [UInt8]? {
        guard let value = attributes.first(where: { $0.type == attribute.rawValue })?.value, value.count == 16 else { return nil }
        return value
    }

    static func le32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }

    /// "8-4-4-4-12" text → 16 bytes.
    static func uuidBytes(_ text: String) -> [UInt8]? {
        let hex = Array(text.utf8.filter { $0 != UInt8(ascii: "-") })
        guard hex.count == 32 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: 32, by: 2) {
            guard let high = nibble(hex[index]), let low = nibble(hex[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }
}
