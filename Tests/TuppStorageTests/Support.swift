import Glibc
import Testing
import TuppBase
import TuppManifest
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Runs an outside witness (findmnt, btrfs, umoci, python3; a bare name is looked up in
/// PATH) in the C locale, stderr joined to stdout. A non-zero exit throws unless
/// `allowFailure`. Only for tests; tupp itself never shells out like this.
@discardableResult
func command(_ argv: [String], allowFailure: Bool = false) throws -> Output {
    let result = try Spawn.run(argv, stderrToStdout: true,
                               environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"])
    if result.status != 0 && !allowFailure {
        throw SystemError.failure("run", argv.joined(separator: " "), "exit \(result.status): \(result.output)")
    }
    return result
}

/// A loop-backed pool in a fresh temporary directory, torn down completely by
/// `destroy()`: unmounted, loop device detached, image file and directory removed.
struct TestPool {
    let directory: TemporaryDirectory
    let config: Storage
    var root: String { config.root }
    var store: ImageStore { ImageStore(poolRoot: config.root) }

    static func make(size: UInt64 = 256 << 20) async throws -> TestPool {
        let directory = try TemporaryDirectory("tupp-storage")
        let config = Storage(root: "\(directory.path)/pool",
                                device: Storage.Device(file: "\(directory.path)/pool.img", size: size))
        let pool = TestPool(directory: directory, config: config)
        do {
            try await Pool.create(config)
        } catch {
            pool.destroy()
            throw error
        }
        return pool
    }

    /// Unmounts and removes the pool through `Pool`, then checks from outside that nothing
    /// of it is left (mount, loop device, pool file) before the directory goes.
    func destroy(sourceLocation: SourceLocation = #_sourceLocation) {
        // Mounts a test made below the root go first (tests unmount their own; this
        // is the safety net when one failed half-way).
        let canonicalRoot = Paths.canonical(root) ?? root
        for mount in Inventory.readMountInfo("/proc/self/mountinfo").reversed()
        where mount.mountPoint.hasPrefix(canonicalRoot + "/") {
            umount2(mount.mountPoint, Int32(MNT_DETACH))
        }
        do {
            try Pool.unmountAndDetach(config)
        } catch {
            let holders = ProcEntry.holders(of: canonicalRoot)
            Issue.record("teardown: \(render(error)); holding it: \(holders.isEmpty ? "no process of this namespace" : holders.joined(separator: "; "))",
                         sourceLocation: sourceLocation)
        }
        do { try Pool.removeFile(config) } catch { Issue.record("teardown: \(render(error))", sourceLocation: sourceLocation) }
        let left = Inventory.take(Inventory.Scope(directories: [directory.path]))
        #expect(left.isEmpty, "the pool left behind:\n\(left)", sourceLocation: sourceLocation)
        for mount in left.mounts.reversed() { umount2(mount.mountPoint, Int32(MNT_DETACH)) }
        for loop in left.loopDevices { _ = try? command(["losetup", "-d", String(loop.prefix { $0 != " " })], allowFailure: true) }
        directory.remove()
    }
}

/// Gate for every integration test here.
func storageHostReady() throws -> Bool {
    try Host.require(storageFeatures)
}

/// What the storage tests need; `.requires(storageFeatures)` gates a parameterized one.
let storageFeatures: [Host.Feature] = [.root, .btrfs, .command("/usr/sbin/mkfs.btrfs"), .command("/usr/bin/btrfs")]

/// Writes a Python tarfile program's output: `script` gets `out` (the archive path) and
/// `tarfile`, `io` imported, with a helper `add(tf, name, data=b"", **attributes)`.
func makeTar(_ path: String, _ body: String, compression: String = "") throws {
    let program = """
    import io, sys, tarfile, time
    out = sys.argv[1]
    def info(name, type=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, linkname="", size=0, devmajor=0, devminor=0, mtime=1700000000):
        ti = tarfile.TarInfo(name)
        ti.type = type; ti.mode = mode; ti.uid = uid; ti.gid = gid; ti.linkname = linkname
        ti.size = size; ti.devmajor = devmajor; ti.devminor = devminor; ti.mtime = mtime
        return ti
    def add(tf, name, data=b"", **kw):
        ti = info(name, size=len(data), **kw)
        tf.addfile(ti, io.BytesIO(data) if data else None)
    def dir(tf, name, **kw):
        kw.setdefault("mode", 0o755)
        tf.addfile(info(name, type=tarfile.DIRTYPE, **kw))
    def sym(tf, name, target, **kw):
        tf.addfile(info(name, type=tarfile.SYMTYPE, linkname=target, mode=0o777, **kw))
    def hard(tf, name, target, **kw):
        tf.addfile(info(name, type=tarfile.LNKTYPE, linkname=target, **kw))
    with tarfile.open(out, "w\(compression.isEmpty ? "" : ":" + compression)", format=tarfile.PAX_FORMAT) as tf:
    \(body.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
    """
    try command(["python3", "-c", program, path])
}

extension SystemError {
    var text: String { description }
}

func fileText(_ path: String) -> String? { try? Files.readText(path) }

extension String {
    enum TrimSet { case whitespacesAndNewlines }
    func trimmingCharacters(in _: TrimSet) -> String { trimmingCharacters() }
}

/// An error as text with its fields spelled out (operation, object, errno number, detail),
/// which is what the assertions here look at.
func render(_ error: any Error) -> String {
    guard let error = error as? SystemError else { return String(describing: type(of: error)) }
    return "\(error.operation) \(error.object) [errno \(error.code)] \(error.detail ?? "")"
}

/// Runs `body` with a fresh pool (skipped when the host cannot), records any error
/// through `render` and always destroys the pool.
func withPool(size: UInt64 = 256 << 20, _ body: (TestPool) async throws -> Void) async throws {
    guard try storageHostReady() else { return }
    let pool: TestPool
    do {
        pool = try await TestPool.make(size: size)
    } catch {
        Issue.record("creating the test pool: \(render(error))")
        return
    }
    defer { pool.destroy() }
    do {
        try await body(pool)
    } catch {
        Issue.record("\(render(error))")
    }
}

/// The SystemError `body` throws, for assertions on its fields; records an issue when
/// `body` succeeds or throws something else.
@discardableResult
func expectFailure(_ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: () throws -> Void) -> SystemError? {
    do {
        try body()
        Issue.record("expected a failure \(comment)", sourceLocation: sourceLocation)
        return nil
    } catch let error as SystemError {
        return error
    } catch {
        Issue.record("unexpected error type \(type(of: error))", sourceLocation: sourceLocation)
        return nil
    }
}

/// sha256 of a file, from coreutils' sha256sum (an outside witness).
func sha256sum(_ path: String) throws -> String {
    let output = try command(["sha256sum", path]).output
    return String(output.prefix(64))
}

/// A minimal OCI image layout around uncompressed layer tarballs, written by hand so
/// tests can put hostile layers in it. Returns the manifest digest.
@discardableResult
func makeOCILayout(_ directory: String, layers: [String], tag: String? = "latest") throws -> String {
    try Files.createDirectory("\(directory)/blobs/sha256")
    func addBlob(_ bytes: [UInt8]) throws -> (digest: String, size: Int) {
        let temp = "\(directory)/blob.tmp"
        try Files.writeAtomically(temp, bytes, mode: 0o644)
        let hex = try sha256sum(temp)
        try command(["mv", temp, "\(directory)/blobs/sha256/\(hex)"])
        return ("sha256:\(hex)", bytes.count)
    }
    var layerDescriptors: [String] = []
    var diffIDs: [String] = []
    for layer in layers {
        let blob = try addBlob(try Files.read(layer) ?? [])
        layerDescriptors.append(#"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(blob.digest)","size":\#(blob.size)}"#)
        diffIDs.append("\"\(blob.digest)\"")
    }
    let config = try addBlob(Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[\#(diffIDs.joined(separator: ","))]}}"#.utf8))
    let manifest = try addBlob(Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(config.digest)","size":\#(config.size)},"layers":[\#(layerDescriptors.joined(separator: ","))]}"#.utf8))
    let annotations = tag.map { #","annotations":{"org.opencontainers.image.ref.name":"\#($0)"}"# } ?? ""
    try Files.writeAtomically("\(directory)/index.json", text: #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(manifest.digest)","size":\#(manifest.size)\#(annotations)}]}"#, mode: 0o644)
    try Files.writeAtomically("\(directory)/oci-layout", text: #"{"imageLayoutVersion":"1.0.0"}"#, mode: 0o644)
    return manifest.digest
}
