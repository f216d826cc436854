import Testing
import TuppFacts
import TuppManifest
import TuppSystem
@testable import TuppStorage

/// The pure parts of volumes in storage: names, the layout, and the send stream check on
/// hand-made streams. No root, no pool. (The judgement is TuppPlan's: VolumeKindTests.)
@Suite("Volumes: pure judgement")
struct VolumeUnitTests {
    // MARK: Names

    @Test func namesAndTags() throws {
        for good in ["pgdata", "a", "data-1_x", String(repeating: "v", count: 200)] {
            try VolumeNames.validate(volume: good)
            try VolumeNames.validate(tag: good)
        }
        for bad in ["", ".snapshots", ".staging", "a/b", "a@b", "..", "x\u{0}y", String(repeating: "v", count: 201)] {
            #expect(throws: SystemError.self, "\(bad)") { try VolumeNames.validate(volume: bad) }
            #expect(throws: SystemError.self, "\(bad)") { try VolumeNames.validate(tag: bad) }
        }
        #expect(try VolumeReference.parse("pgdata") == VolumeReference(volume: "pgdata"))
        #expect(try VolumeReference.parse("pgdata@t1") == VolumeReference(volume: "pgdata", tag: "t1"))
        #expect(throws: SystemError.self) { try VolumeReference.parse("pgdata@") }
        #expect(throws: SystemError.self) { try VolumeReference.parse("@t1") }
        #expect(throws: SystemError.self) { try VolumeReference.parse("a@b@c") }
        #expect(VolumeReference(volume: "a", tag: "b").description == "a@b")
    }

    @Test func timestampTagsAreUTCAndSortByTime() throws {
        #expect(VolumeNames.timestampTag(secondsSinceEpoch: 0) == "19700101T000000Z")
        #expect(VolumeNames.timestampTag(secondsSinceEpoch: 1_769_861_101) == "20260131T120501Z")
        let earlier = VolumeNames.timestampTag(secondsSinceEpoch: 1_700_000_000)
        let later = VolumeNames.timestampTag(secondsSinceEpoch: 1_700_000_001)
        #expect(earlier < later)
        try VolumeNames.validate(tag: later)
    }

    // MARK: Layout

    @Test func subvolumesBelowVolumesAreClassified() {
        func place(_ path: String, readOnly: Bool = false) -> VolumeStore.Place {
            VolumeStore.classify(path.split(separator: "/").map(String.init), readOnly: readOnly)
        }
        #expect(place("volumes/pgdata") == .volume("pgdata"))
        #expect(place("volumes/.snapshots/pgdata/t1", readOnly: true) == .snapshot(volume: "pgdata", tag: "t1"))
        // tupp's snapshots are born read-only: a writable one is a receive that did not finish.
        #expect(place("volumes/.snapshots/pgdata/t1") == .leftover(.receive, volume: "pgdata"))
        #expect(place("volumes/.staging/create-pg-data-a1b2c3d4e5f6") == .leftover(.create, volume: "pg-data"))
        #expect(place("volumes/.staging/export-pgdata-a1b2c3d4e5f6/20260101T000000Z", readOnly: true) == .leftover(.export, volume: "pgdata"))
        for other in ["volumes/pgdata/inner", "volumes/.hidden", "volumes/.snapshots/pgdata", "volumes/.snapshots/pgdata/t1/x",
                      "volumes/.staging/create-pgdata-a1b2/extra", "volumes/.staging/export-pgdata-a1b2",
                      "volumes/.staging/receive-pgdata-a1b2/t1", "volumes/.staging/unknown-pgdata-a1b2",
                      "volumes/.staging/create-x", "images/box"] {
            #expect(place(other) == .other, "\(other)")
        }
        let name = VolumeStore.stagingName(.create, "pg-data")
        #expect(VolumeStore.parseStagingName(name)! == (.create, "pg-data"))
    }

    @Test func aReplacedVolumeIsKeptUnlessItsContentExistsElsewhere() {
        func subvolume(generation: UInt64, created: UInt64, parent: String?) -> SubvolumeInfo {
            SubvolumeInfo(path: "volumes/data", id: 300, uuid: "v", parentUUID: parent, readOnly: false,
                          generation: generation, createdAt: 0, createdGeneration: created)
        }
        var contents = VolumeContents()
        contents.snapshots["data"] = ["t1": VolumeSnapshotFacts(volume: "data", tag: "t1",
            subvolume: SubvolumeInfo(path: "volumes/.snapshots/data/t1", id: 299, uuid: "s1", parentUUID: nil, readOnly: true,
                                     generation: 5, createdAt: 0), usage: nil)]
        #expect(!VolumeStore.mustKeep(subvolume(generation: 7, created: 7, parent: "s1"), among: contents))
        #expect(VolumeStore.mustKeep(subvolume(generation: 8, created: 7, parent: "s1"), among: contents))
        #expect(VolumeStore.mustKeep(subvolume(generation: 7, created: 7, parent: "gone"), among: contents))
        #expect(!VolumeStore.mustKeep(subvolume(generation: 7, created: 7, parent: nil), among: contents))
    }

    // MARK: Send stream check

    /// A hand-made send stream: header, then commands of TLVs, each with the CRC-32C
    /// btrfs receive checks — so a stream the check lets through is one receive would run.
    struct Stream {
        var version: UInt32 = 1
        var commands: [(UInt16, [(UInt16, [UInt8])])] = []

        static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
        static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }

        var bytes: [UInt8] {
            var out = SendStreamCheck.magic + Self.le32(version)
            for (command, attributes) in commands {
                var payload: [UInt8] = []
                for (type, value) in attributes {
                    payload += Self.le16(type)
                    if version >= 2 && type == 19 { payload += value; continue }
                    payload += Self.le16(UInt16(value.count)) + value
                }
                let header = Self.le32(UInt32(payload.count)) + Self.le16(command)
                out += header + Self.le32(Self.crc32c(header + Self.le32(0) + payload)) + payload
            }
            return out
        }

        /// CRC-32C as the kernel's crc32c(0, …): seed 0, no final inversion.
        static func crc32c(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = (crc >> 1) ^ (0x82F6_3B78 & (0 &- (crc & 1))) }
            }
            return crc
        }
    }

    static let own = [UInt8](repeating: 0xaa, count: 16)
    static let parent = [UInt8](repeating: 0xbb, count: 16)
    static let foreign = [UInt8](repeating: 0xcc, count: 16)
    static func path(_ text: String) -> (UInt16, [UInt8]) { (15, Array(text.utf8)) }

    /// Runs the check over `stream` the way StreamPump cuts it; the rejection, if any.
    static func verdict(_ stream: Stream, allowed: Set<[UInt8]> = [parent],
                        safe: @escaping ([UInt8], String) -> Bool = { _, _ in true }) -> String? {
        var check = SendStreamCheck(allowedParents: allowed, cloneSourceIsSafe: safe)
        let bytes = stream.bytes
        do {
            try bytes.withUnsafeBytes { raw in
                try check.checkHeader(UnsafeRawBufferPointer(rebasing: raw[0..<SendStreamCheck.headerSize]))
                var offset = SendStreamCheck.headerSize
                while offset < raw.count {
                    let header = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + 10])
                    let length = try SendStreamCheck.payloadLength(ofCommandHeader: header)
                    try check.check(command: header, payload: UnsafeRawBufferPointer(rebasing: raw[offset + 10..<offset + 10 + length]))
                    offset += 10 + length
                }
            }
        } catch {
            return (error as? SendStreamCheck.Rejection)?.reason ?? "\(error)"
        }
        return nil
    }

    static func full(_ body: [(UInt16, [(UInt16, [UInt8])])], name: String = "t1") -> Stream {
        Stream(commands: [(1, [path(name), (1, own), (2, [0, 0, 0, 0, 0, 0, 0, 1])])] + body + [(21, [])])
    }

    @Test func aPlainStreamPasses() {
        let stream = Self.full([
            (4, [Self.path("dir")]),
            (3, [Self.path("dir/file")]),
            (15, [Self.path("dir/file"), (18, Stream.le32(0) + Stream.le32(0)), (19, Array("hello".utf8))]),
            (8, [Self.path("dir/link"), (17, Array("/etc/../../anything".utf8))]),  // a symlink's target is data
            (16, [Self.path("dir/copy"), (20, Self.own), (22, Array("dir/file".utf8))]),
        ])
        #expect(Self.verdict(stream) == nil)
        var v2 = stream
        v2.version = 2
        #expect(Self.verdict(v2) == nil)
    }

    @Test func pathsMustStayInside() {
        #expect(Self.verdict(Self.full([(3, [Self.path("../escape")])]))?.contains("'..'") == true)
        #expect(Self.verdict(Self.full([(3, [Self.path("a/../../b")])]))?.contains("'..'") == true)
        #expect(Self.verdict(Self.full([(3, [Self.path("/etc/passwd")])]))?.contains("absolute") == true)
        #expect(Self.verdict(Self.full([(9, [Self.path("a"), (16, Array("../b".utf8))])])) != nil)
        #expect(Self.verdict(Self.full([(10, [Self.path("a"), (17, Array("../../etc/shadow".utf8))])])) != nil)
        #expect(Self.verdict(Self.full([(5, [Self.path("sda"), (8, [0, 8, 0, 0, 0, 0, 0, 0])])]))?.contains("device node") == true)
        #expect(Self.verdict(Self.full([], name: "../x")) != nil)
        #expect(Self.verdict(Self.full([], name: "a@b"))?.contains("tag") == true)
        #expect(Self.verdict(Self.full([], name: ".hidden"))?.contains("tag") == true)
    }

    @Test func parentsAndClonesComeOnlyFromThisVolume() {
        func incremental(_ parent: [UInt8], _ body: [(UInt16, [(UInt16, [UInt8])])] = []) -> Stream {
            Stream(commands: [(2, [Self.path("t2"), (1, Self.own), (20, parent)])] + body + [(21, [])])
        }
        #expect(Self.verdict(incremental(Self.parent)) == nil)
        #expect(Self.verdict(incremental(Self.foreign))?.contains("parent") == true)
        #expect(Self.verdict(incremental(Self.parent), allowed: [])?.contains("parent") == true)
        let cloneFromParent: (UInt16, [(UInt16, [UInt8])]) = (16, [Self.path("f"), (20, Self.parent), (22, Array("old/f".utf8))])
        #expect(Self.verdict(incremental(Self.parent, [cloneFromParent])) == nil)
        #expect(Self.verdict(incremental(Self.parent, [cloneFromParent]), safe: { _, _ in false })?.contains("symlink") == true)
        let cloneFromElsewhere: (UInt16, [(UInt16, [UInt8])]) = (16, [Self.path("f"), (20, Self.foreign), (22, Array("f".utf8))])
        #expect(Self.verdict(incremental(Self.parent, [cloneFromElsewhere]))?.contains("not a snapshot of this volume") == true)
        var seen: [(String)] = []
        _ = Self.verdict(incremental(Self.parent, [cloneFromParent])) { uuid, path in
            seen.append(path)
            return uuid == Self.parent
        }
        #expect(seen == ["old/f"])
    }

    @Test func malformedStreamsAreRefused() {
        #expect(Self.verdict(Stream(commands: [(3, [Self.path("a")])]))?.contains("does not start with a subvolume") == true)
        #expect(Self.verdict(Self.full([(1, [Self.path("t2"), (1, Self.own)])]))?.contains("more than one subvolume") == true)
        #expect(Self.verdict(Stream(commands: [(1, [Self.path("t1")])]))?.contains("UUID") == true)
        #expect(Self.verdict(Self.full([(99, [])]))?.contains("unknown command") == true)
        var wrongVersion = Self.full([])
        wrongVersion.version = 9
        #expect(Self.verdict(wrongVersion)?.contains("version") == true)
        var check = SendStreamCheck(allowedParents: [], cloneSourceIsSafe: { _, _ in true })
        let garbage = [UInt8](repeating: 0x41, count: SendStreamCheck.headerSize)
        #expect(throws: SendStreamCheck.Rejection.self) {
            try garbage.withUnsafeBytes { raw in try check.checkHeader(raw) }
        }
        // An attribute that claims more bytes than its command has.
        let truncated = SendStreamCheck.magic + Stream.le32(1) + Stream.le32(6) + Stream.le16(1) + Stream.le32(0)
            + Stream.le16(15) + Stream.le16(200) + [0x61, 0x62]
        var check2 = SendStreamCheck(allowedParents: [], cloneSourceIsSafe: { _, _ in true })
        #expect(throws: SendStreamCheck.Rejection.self) {
            try truncated.withUnsafeBytes { raw in
                try check2.checkHeader(UnsafeRawBufferPointer(rebasing: raw[0..<17]))
                try check2.check(command: UnsafeRawBufferPointer(rebasing: raw[17..<27]),
                                 payload: UnsafeRawBufferPointer(rebasing: raw[27...]))
            }
        }
        #expect(SendStreamCheck.uuidBytes("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa") == Self.own)
        #expect(SendStreamCheck.uuidBytes("not-a-uuid") == nil)
    }
}
