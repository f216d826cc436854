import Testing
import TuppFacts
@testable import TuppStorage

/// Which images use which layer, judged from the UUID links btrfs keeps (pure).
@Suite("Layer usage")
struct LayerUsageTests {
    func subvolume(_ path: String, _ uuid: String, parent: String?) -> SubvolumeInfo {
        SubvolumeInfo(path: path, id: 0, uuid: uuid, parentUUID: parent, readOnly: true, generation: 1, createdAt: 0)
    }

    @Test func imagesUseTheirWholeChain() {
        let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)
        let c = String(repeating: "c", count: 64), d = String(repeating: "d", count: 64)
        let layers = [
            a: subvolume("layers/\(a)", "u-a", parent: nil),
            b: subvolume("layers/\(b)", "u-b", parent: "u-a"),
            c: subvolume("layers/\(c)", "u-c", parent: "u-b"),
            // A base layer nothing is built on, and whose parent was deleted by hand.
            d: subvolume("layers/\(d)", "u-d", parent: "u-gone"),
        ]
        let images = [
            "top": subvolume("images/top", "i-1", parent: "u-c"),
            "middle": subvolume("images/middle", "i-2", parent: "u-b"),
            "tarball": subvolume("images/tarball", "i-3", parent: nil),
        ]
        let described = LayerStore.describe(layers: layers, images: images)
        let users = Dictionary(uniqueKeysWithValues: described.map { ($0.chainID, $0.images) })
        #expect(users["sha256:\(a)"] == ["middle", "top"])
        #expect(users["sha256:\(b)"] == ["middle", "top"])
        #expect(users["sha256:\(c)"] == ["top"])
        #expect(users["sha256:\(d)"] == [])
        #expect(described.first { $0.chainID == "sha256:\(c)" }?.parentChainID == "sha256:\(b)")
        #expect(described.first { $0.chainID == "sha256:\(a)" }?.parentChainID == nil)
        #expect(described.first { $0.chainID == "sha256:\(d)" }?.parentChainID == nil)
        // Deleting "top" frees c only; deleting both frees the whole chain (and d stays free).
        #expect(LayerStore.freed(byDeleting: ["top"], from: described).map(\.chainID) == ["sha256:\(c)", "sha256:\(d)"])
        #expect(LayerStore.freed(byDeleting: ["top", "middle"], from: described).count == 4)
    }

    @Test func compressionFollowsTheMediaType() {
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar+gzip") == .gzip)
        #expect(LayerCompression(mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip") == .gzip)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar+zstd") == .zstd)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar") == LayerCompression.none)
        #expect(LayerCompression(mediaType: nil) == .detect)
    }
}
