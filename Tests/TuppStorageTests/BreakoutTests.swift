import Glibc
import Testing
import TuppFacts
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

/// A hostile archive and what must come of it. `OUT` in bodies is replaced by the
/// absolute path of a directory outside the pool holding the sentinel file.
struct Breakout: Sendable, CustomStringConvertible {
    enum Outcome: Sendable {
        /// Import fails; the error names the archive and mentions `reason`.
        case refused(reason: String)
        /// Import succeeds; `check(imageRoot, outside)` says what happened inside instead.
        case contained(@Sendable (_ root: String, _ outside: String) throws -> Void)
    }

    var name: String
    /// Python tarfile statements (see makeTar); several entries = several OCI layers.
    var layers: [String]
    var outcome: Outcome
    var description: String { name }

    /// Plain tar (no whiteout semantics) unless it has several layers or `oci` is set.
    var oci = false

    init(_ name: String, _ layers: [String], oci: Bool = false, _ outcome: Outcome) {
        self.name = name
        self.layers = layers
        self.oci = oci || layers.count > 1
        self.outcome = outcome
    }
}

private func read(_ path: String) -> String? { fileText(path) }

private let baseLayer = """
dir(tf, "etc")
add(tf, "etc/passwd", b"inside")
"""

let breakouts: [Breakout] = [
    Breakout("dot-dot path", ["add(tf, \"../../../../../../OUT/sentinel\", b\"pwned\")"], .refused(reason: "'..'")),
    Breakout("dot-dot in the middle", ["dir(tf, \"etc\")\nadd(tf, \"etc/../../sentinel\", b\"pwned\")"], .refused(reason: "'..'")),
    Breakout("absolute path", ["add(tf, \"OUT/sentinel\", b\"pwned\")"], .refused(reason: "absolute")),
    Breakout("absolute path in a long PAX name", ["add(tf, \"OUT/\" + \"a\" * 150, b\"pwned\")"], .refused(reason: "absolute")),
    Breakout("symlink parent, absolute", ["dir(tf, \"OUT\"[1:])\nsym(tf, \"escape\", \"OUT\")\nadd(tf, \"escape/sentinel\", b\"pwned\")"],
             .contained { root, out in #expect(read("\(root)\(out)/sentinel") == "pwned") }),
    Breakout("symlink parent, absolute, target missing inside", ["sym(tf, \"escape\", \"OUT\")\nadd(tf, \"escape/sentinel\", b\"pwned\")"],
             .refused(reason: "dangling symlink")),
    Breakout("symlink parent, relative climbing", ["dir(tf, \"OUT\"[1:])\nsym(tf, \"escape\", \"../../../../../../../../OUT\")\nadd(tf, \"escape/sentinel\", b\"pwned\")"],
             .contained { root, out in #expect(read("\(root)\(out)/sentinel") == "pwned") }),
    Breakout("symlink chain, absolute at the end", ["dir(tf, \"OUT\"[1:])\nsym(tf, \"a\", \"b\")\nsym(tf, \"b\", \"OUT\")\nadd(tf, \"a/sentinel\", b\"pwned\")"],
             .contained { root, out in #expect(read("\(root)\(out)/sentinel") == "pwned") }),
    Breakout("symlink in a subdirectory climbing out", ["dir(tf, \"d\")\nsym(tf, \"d/up\", \"../../../..\")\nadd(tf, \"d/up/dropped\", b\"pwned\")"],
             .contained { root, out in #expect(read("\(root)/dropped") == "pwned") }),
    Breakout("symlink then a file through it", ["sym(tf, \"link\", \"OUT/sentinel\")\nadd(tf, \"link\", b\"pwned\")"],
             .contained { root, out in
                 #expect(read("\(root)/link") == "pwned")
                 #expect(symlinkTarget("\(root)/link") == nil, "the symlink was replaced, not followed")
             }),
    Breakout("directory replaced by a symlink, then a file below", ["dir(tf, \"x\")\nsym(tf, \"x\", \"OUT\")\nadd(tf, \"x/sentinel\", b\"pwned\")"],
             .refused(reason: "dangling symlink")),
    Breakout("hard link to an absolute target", ["hard(tf, \"h\", \"OUT/sentinel\")"], .refused(reason: "absolute")),
    Breakout("hard link climbing out", ["hard(tf, \"h\", \"../../../../OUT/sentinel\")"], .refused(reason: "'..'")),
    Breakout("hard link through a symlinked parent", ["sym(tf, \"out\", \"OUT\")\nhard(tf, \"h\", \"out/sentinel\")"], .refused(reason: "does not exist")),
    Breakout("hard link to a symlink pointing out", ["sym(tf, \"s\", \"OUT/sentinel\")\nhard(tf, \"h\", \"s\")"],
             .contained { root, out in #expect(symlinkTarget("\(root)/h")?.hasSuffix("/sentinel") == true) }),
    Breakout("symlink loop as parent", ["sym(tf, \"l1\", \"l2\")\nsym(tf, \"l2\", \"l1\")\nadd(tf, \"l1/x\", b\"x\")"], .refused(reason: "")),
    Breakout("dangling symlink as parent", ["sym(tf, \"dangling\", \"/nonexistent-tupp\")\nadd(tf, \"dangling/x\", b\"x\")"], .refused(reason: "dangling")),
    Breakout("root replaced by a symlink", ["sym(tf, \".\", \"OUT\")"], .refused(reason: "root directory")),
    Breakout("device nodes are skipped", ["tf.addfile(info(\"null\", type=tarfile.CHRTYPE, devmajor=1, devminor=3))\ntf.addfile(info(\"disk\", type=tarfile.BLKTYPE, devmajor=8, devminor=0))\ntf.addfile(info(\"pipe\", type=tarfile.FIFOTYPE))"],
             .contained { root, out in
                 #expect(!Files.exists("\(root)/null") && !Files.exists("\(root)/disk"))
                 #expect(((try? Files.status("\(root)/pipe")) ?? nil).map { $0.st_mode & S_IFMT } == S_IFIFO)
             }),
    // Whiteouts (OCI layers).
    Breakout("whiteout of '..'", [baseLayer, "add(tf, \".wh..\")"], .refused(reason: "whiteout names no entry")),
    Breakout("whiteout of '..' in a directory", [baseLayer, "add(tf, \"etc/.wh...\")"], .refused(reason: "whiteout names no entry")),
    Breakout("whiteout with no name", [baseLayer, "add(tf, \"etc/.wh.\")"], .refused(reason: "whiteout names no entry")),
    Breakout("opaque marker as a directory with payload", [baseLayer, "dir(tf, \"etc/.wh..wh..opq\")\nadd(tf, \"etc/.wh..wh..opq/x\", b\"x\")"], .refused(reason: "whiteout")),
    Breakout("opaque marker with content", [baseLayer, "add(tf, \"etc/.wh..wh..opq\", b\"payload\")"], .refused(reason: "must be empty")),
    Breakout("whiteout name used as a directory", [baseLayer, "add(tf, \".wh.etc/somefile\", b\"x\")"], .refused(reason: "whiteout name used as a directory")),
    Breakout("unknown whiteout meta entry", [baseLayer, "add(tf, \".wh..wh.plnk\")"], .refused(reason: "meta")),
    Breakout("whiteout through a symlinked parent", [baseLayer + "\nsym(tf, \"out\", \"OUT\")", "add(tf, \"out/.wh.sentinel\")"],
             .contained { root, out in #expect(read("\(root)/etc/passwd") == "inside") }),
    Breakout("whiteout of a symlink removes the link only", [baseLayer + "\nsym(tf, \"localetc\", \"/etc\")", "add(tf, \".wh.localetc\")"],
             .contained { root, out in
                 #expect(!Files.exists("\(root)/localetc"))
                 #expect(read("\(root)/etc/passwd") == "inside")
             }),
]

@Suite("Hostile archives", .serialized)
struct BreakoutTests {
    @Test func corpusIsLargeEnough() { #expect(breakouts.count >= 15) }

    @Test(.requires(storageFeatures), arguments: breakouts)
    func breakoutIsRefusedOrContained(_ breakout: Breakout) async throws {
        try await withPool { pool in
            let outside = "\(pool.directory.path)/outside"
            try Files.createDirectory(outside)
            try Files.writeAtomically("\(outside)/sentinel", text: "untouched", mode: 0o644)
            let before = try #require(try Files.status("\(outside)/sentinel"))

            var tars: [String] = []
            for (index, body) in breakout.layers.enumerated() {
                let tar = "\(pool.directory.path)/layer\(index).tar"
                try makeTar(tar, body.replacingOccurrences(of: "OUT", with: outside))
                tars.append(tar)
            }
            let source: Image.Source
            let label: String
            if breakout.oci {
                let layout = "\(pool.directory.path)/layout"
                try makeOCILayout(layout, layers: tars)
                source = .oci(layout: layout, tag: nil)
                label = layout
            } else {
                source = .tar(path: tars[0])
                label = tars[0]
            }

            switch breakout.outcome {
            case .refused(let reason):
                do {
                    _ = try await pool.store.importImage(name: "hostile", from: source)
                    Issue.record("\(breakout.name): imported, expected a refusal")
                } catch let error as SystemError {
                    let text = render(error)
                    #expect(error.object.contains(label), "error names the archive: \(text)")
                    #expect(reason.isEmpty || text.contains(reason), "\(text)")
                }
                #expect(try pool.store.contents().images["hostile"] == nil)
            case .contained(let check):
                let image = try await pool.store.importImage(name: "hostile", from: source)
                try check("\(pool.root)/images/hostile", outside)
                if breakout.name.hasPrefix("device") {
                    #expect(image.warnings.filter { $0.contains("device") }.count == 2)
                }
            }
            // Nothing outside changed, nothing was added there, no temporary subvolume remains.
            #expect(fileText("\(outside)/sentinel") == "untouched")
            let after = try #require(try Files.status("\(outside)/sentinel"))
            #expect(after.st_nlink == 1 && after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_ino == before.st_ino)
            #expect(try Files.list(outside) == ["sentinel"])
            #expect(try pool.store.contents().leftovers.isEmpty)
        }
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
