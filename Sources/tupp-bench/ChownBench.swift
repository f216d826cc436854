import ArgumentParser
import Glibc
import TuppStorage
import TuppSystem

/// What `userns: auto` would cost without idmapped mounts: the recursive chown that
/// shifts every file of a fresh snapshot into the container's range (LXC's and Podman's
/// way before idmapped mounts). Per round: a snapshot of the busybox image and one of a
/// 10,000-file tree, each chowned entry by entry (lchown semantics: symlinks themselves),
/// timed without the snapshot's creation; then both are deleted, and the tree at the end.
struct ChownBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chown",
        abstract: "Recursive chown of fresh snapshots into a uid range: the busybox image and a 10,000-file tree.")

    @Option(help: "The pool root (holds images/ and containers/).")
    var pool: String

    @Option(help: "The image to snapshot.")
    var image = "box"

    @Option(help: "Files in the generated tree (made once as images/bench-tree).")
    var files = 10_000

    @Option(help: "Repetitions.")
    var rounds = 20

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    static let shift: UInt32 = 0x7000_0000 + 4001 * 65536

    func run() throws {
        let store = ImageStore(poolRoot: pool)
        let tree = "bench-tree"
        if try store.subvolume("images/\(tree)") == nil { try makeTree(store, name: tree) }
        defer { try? store.deleteSubvolume("images/\(tree)") }
        var busybox = Series("userns.chown.busybox"), large = Series("userns.chown.tree10k")
        var busyboxEntries = 0, treeEntries = 0
        for round in 0..<rounds + 1 {
            for (source, series) in [(image, 0), (tree, 1)] {
                let name = "benchchown\(round)-\(series)"
                _ = try store.snapshot(image: source, container: name)
                var sample = Series("")
                let count = try sample.time { try Self.chownTree("\(pool)/containers/\(name)", by: Self.shift) }
                try store.deleteSubvolume("containers/\(name)")
                if round == 0 { continue }  // warm-up
                if series == 0 { busybox.samples += sample.samples; busyboxEntries = count } else { large.samples += sample.samples; treeEntries = count }
            }
        }
        let note = "tupp-bench: chown: busybox snapshot \(busyboxEntries) entries, tree \(treeEntries) entries\n"
        _ = note.withCString { write(2, $0, strlen($0)) }
        try SeriesWriter(path: out).write([busybox, large])
    }

    /// images/NAME: `files` small files in directories of 100, made read-only like an image.
    func makeTree(_ store: ImageStore, name: String) throws {
        let path = "\(pool)/images/\(name)"
        try Command.run(["btrfs", "subvolume", "create", path])
        for index in 0..<files {
            let dir = "\(path)/d\(index / 100)"
            if index % 100 == 0 { try Files.createDirectory(dir) }
            try Files.writeAtomically("\(dir)/f\(index)", text: String(repeating: "x", count: 512), mode: 0o644)
        }
        try Command.run(["btrfs", "property", "set", "-ts", path, "ro", "true"])
    }

    /// Adds `shift` to the owner and group of every entry below and at `root`, without
    /// following symlinks; the number of entries.
    static func chownTree(_ root: String, by shift: UInt32) throws -> Int {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", root) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, fchown(fd, st.st_uid &+ shift, st.st_gid &+ shift) == 0 else { throw SystemError("chown", root) }
        return try chownEntries(of: fd, path: root, by: shift) + 1
    }

    static func chownEntries(of dirfd: Int32, path: String, by shift: UInt32) throws -> Int {
        let copy = dup(dirfd)
        guard copy >= 0, let dir = fdopendir(copy) else { throw SystemError("open directory", path) }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            var st = stat()
            guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0,
                  fchownat(dirfd, name, st.st_uid &+ shift, st.st_gid &+ shift, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw SystemError("chown", "\(path)/\(name)")
            }
            count += 1
            if st.st_mode & S_IFMT == S_IFDIR {
                let child = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw SystemError("open", "\(path)/\(name)") }
                defer { close(child) }
                count += try chownEntries(of: child, path: "\(path)/\(name)", by: shift)
            }
        }
        return count
    }
}
