import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Builds an image with umoci: a base layer, a second layer that changes, chmods,
/// chowns and deletes (whiteouts), and a hand-made third layer with an opaque
/// directory and a whiteout-then-recreate, added verbatim with `umoci raw add-layer`.
private let umociScript = #"""
set -e
cd "$1"
umoci init --layout L
umoci new --image L:img
umoci unpack --image L:img B >/dev/null
R=B/rootfs
mkdir -p $R/etc $R/opaque/keepdir $R/del/sub $R/bin $R/home/u $R/usr/lib
echo hi > $R/etc/motd; echo a > $R/opaque/a; echo b > $R/opaque/b; echo k > $R/opaque/keepdir/k
echo x > $R/del/sub/x; echo gone > $R/gone; head -c 300000 /dev/urandom > $R/usr/lib/blob
printf '#!/bin/sh\necho tool\n' > $R/bin/tool; chmod 4755 $R/bin/tool
ln $R/bin/tool $R/bin/tool2; ln -s tool $R/bin/t; ln -s /etc/motd $R/motdlink
chown -R 1000:1000 $R/home/u; chmod 700 $R/home/u; chmod 1777 $R/opaque; mkfifo $R/fifo
umoci repack --image L:img B >/dev/null
echo changed > $R/etc/motd; chmod 600 $R/etc/motd; chown 5:6 $R/etc/motd
rm $R/gone; rm -rf $R/del; rm $R/opaque/a; echo new > $R/newfile; ln $R/newfile $R/newlink
ln -sfn ../newfile $R/bin/t; chmod 2750 $R/home/u; echo appended >> $R/usr/lib/blob
umoci repack --image L:img B >/dev/null
python3 -c '
import tarfile, io
def add(tf, name, data=b"", mode=0o644, type=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name); ti.type = type; ti.mode = mode; ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if data else None)
with tarfile.open("l3.tar", "w", format=tarfile.PAX_FORMAT) as tf:
    add(tf, "opaque", mode=0o755, type=tarfile.DIRTYPE)
    add(tf, "opaque/.wh..wh..opq")
    add(tf, "opaque/d", b"dee")
    add(tf, "etc/.wh.motd")
    add(tf, "etc/motd", b"third", mode=0o640)
'
umoci raw add-layer --image L:img l3.tar
umoci unpack --image L:img REF >/dev/null
"""#

@Suite("OCI image layouts", .serialized)
struct OCITests {
    @Test func importEqualsUmociUnpack() async throws {
        guard try Host.require(.command("/usr/bin/umoci")) else { return }
        try await withPool { pool in
            let work = pool.directory.path
            try command(["sh", "-c", umociScript, "sh", work])
            let image = try await pool.store.importImage(name: "umoci", from: .oci(layout: "\(work)/L", tag: "img"))
            let expected = try TreeSnapshot("\(work)/REF/rootfs", withMtimes: true)
            let actual = try TreeSnapshot("\(pool.root)/images/umoci", withMtimes: true)
            #expect(actual.differences(from: expected) == [])
            // Not trivially equal: whiteouts and the opaque directory did their work.
            #expect(expected.nodes["opaque/d"] != nil && expected.nodes["opaque/b"] == nil)
            #expect(expected.nodes["opaque/keepdir"] == nil && expected.nodes["gone"] == nil && expected.nodes["del"] == nil)
            #expect(expected.nodes["etc/motd"]?.content == Array("third".utf8))
            #expect(expected.hardlinkSets.count == 2)
            let manifestDigest = try ImageStore.identify(.oci(layout: "\(work)/L", tag: "img"), cacheDirectory: "\(work)/cache")
            #expect(image.digest == manifestDigest && manifestDigest.hasPrefix("sha256:"))
        }
    }

    @Test func tagSelectionAndAmbiguity() async throws {
        guard try Host.require(.command("/usr/bin/umoci")) else { return }
        try await withPool { pool in
            let work = pool.directory.path
            let tar = "\(work)/layer.tar"
            try makeTar(tar, "add(tf, \"hello\", b\"hi\")")
            let digest = try makeOCILayout("\(work)/single", layers: [tar], tag: nil)
            // One manifest, no tag: needs none.
            let single = try await pool.store.importImage(name: "single", from: .oci(layout: "\(work)/single", tag: nil))
            #expect(single.digest == digest)
            #expect(digest == "sha256:" + (try sha256sum("\(work)/single/blobs/sha256/\(digest.dropFirst(7))")))
            #expect(fileText("\(pool.root)/images/single/hello") == "hi")

            try makeOCILayout("\(work)/tagged", layers: [tar], tag: "one")
            try command(["umoci", "tag", "--image", "\(work)/tagged:one", "two"])
            do {
                _ = try await pool.store.importImage(name: "ambiguous", from: .oci(layout: "\(work)/tagged", tag: nil))
                Issue.record("an ambiguous layout was accepted")
            } catch let error as SystemError {
                #expect(error.detail?.contains("one, two") == true, "\(render(error))")
            }
            do {
                _ = try await pool.store.importImage(name: "missing", from: .oci(layout: "\(work)/tagged", tag: "three"))
                Issue.record("a missing tag was accepted")
            } catch let error as SystemError {
                #expect(error.detail?.contains("one, two") == true, "\(render(error))")
            }
            let two = try await pool.store.importImage(name: "two", from: .oci(layout: "\(work)/tagged", tag: "two"))
            #expect(two.digest == digest)
            #expect(try pool.store.contents().leftovers.isEmpty)
        }
    }

    @Test func corruptedLayerIsRejectedAndLeavesNothing() async throws {
        try await withPool { pool in
            let work = pool.directory.path
            let tar = "\(work)/layer.tar"
            try makeTar(tar, "add(tf, \"file\", b\"original content\")")
            try makeOCILayout("\(work)/layout", layers: [tar])
            // Same length, one byte different: the tar still parses, the digest does not match.
            var corrupted = false
            for blob in try Files.list("\(work)/layout/blobs/sha256") {
                let path = "\(work)/layout/blobs/sha256/\(blob)"
                guard var bytes = try Files.read(path), bytes.count > 1000,
                      let index = bytes.firstIndex(of: UInt8(ascii: "o")) else { continue }
                bytes[index] = UInt8(ascii: "O")
                try Files.writeAtomically(path, bytes, mode: 0o644)
                corrupted = true
            }
            #expect(corrupted)
            do {
                _ = try await pool.store.importImage(name: "bad", from: .oci(layout: "\(work)/layout", tag: nil))
                Issue.record("a corrupted layer was imported")
            } catch let error as SystemError {
                #expect(error.detail?.contains("digest mismatch") == true, "\(render(error))")
                #expect(error.object.contains("blobs/sha256/"), "names the blob: \(render(error))")
            }
            let contents = try pool.store.contents()
            #expect(contents.images.isEmpty && contents.leftovers.isEmpty)
        }
    }
}
