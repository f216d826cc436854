import ArgumentParser
import CTuppSys
import Glibc
import TuppFacts
import TuppStorage
import TuppSystem
import TuppTestTools

/// A volume of many files: a read-only snapshot of it (VolumeStore, then again with
/// quotas on) against `cp -a --reflink=always` of the tree and `btrfs subvolume snapshot
/// -r`; a full export of it into a pipe (VolumeStore.export, of a snapshot and of the live
/// volume) against `tar -c` of the tree and `btrfs send`. Interleaved round by round.
struct VolumeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "Snapshot and export a volume of --files files / --bytes bytes: VolumeStore vs cp --reflink, btrfs, tar.")

    @Option(help: "The pool root; the volume is volumes/benchvol, scratch subvolumes go to bench/.")
    var pool: String

    @Option(help: "Files in the volume (in 100 directories).")
    var files = 10_000

    @Option(help: "Bytes in the volume, spread evenly over the files.")
    var bytes = 1 << 30

    @Option(help: "Repetitions.")
    var rounds = 20

    @Option(help: "Append the samples (JSON lines) to this file.")
    var out: String

    static let name = "benchvol"

    func run() throws {
        let store = VolumeStore(poolRoot: pool)
        let volume = "\(pool)/volumes/\(Self.name)"
        let scratch = "\(pool)/bench"
        try Files.createDirectory(scratch, mode: 0o700)
        _ = try store.create(Self.name)
        defer {
            for snapshot in (try? store.contents().snapshots(of: Self.name)) ?? [] {
                try? store.deleteSnapshot(Self.name, tag: snapshot.tag)
            }
            try? store.delete(Self.name)
        }
        try fill(volume)
        try waitForCleaner()

        var snapshot = Series("volume.snapshot.tupp"), cli = Series("volume.snapshot.btrfs")
        var reflink = Series("volume.snapshot.cp-reflink"), quotas = Series("volume.snapshot.tupp-quotas")
        for round in 0..<rounds + 1 {
            var a = Series(""), b = Series(""), c = Series("")
            let copy = "\(scratch)/copy\(round)", cliSnapshot = "\(scratch)/snap\(round)"
            // Each starts on a committed filesystem: a snapshot commits the transaction, and
            // would otherwise pay for what the side before it left dirty.
            func viaTupp() throws {
                try commit()
                _ = try a.time { try store.snapshot(Self.name, tag: "s\(round)") }
            }
            func viaCLI() throws {
                try commit()
                try b.time { try Command.run(["btrfs", "subvolume", "snapshot", "-r", volume, cliSnapshot]) }
            }
            func viaCopy() throws {
                try Command.run(["btrfs", "subvolume", "create", copy])
                try commit()
                try c.time { try Command.run(["cp", "-a", "--reflink=always", "\(volume)/.", "\(copy)/"]) }
            }
            switch round % 3 {
            case 0: try viaTupp(); try viaCLI(); try viaCopy()
            case 1: try viaCLI(); try viaCopy(); try viaTupp()
            default: try viaCopy(); try viaTupp(); try viaCLI()
            }
            try store.deleteSnapshot(Self.name, tag: "s\(round)")
            try Command.run(["btrfs", "subvolume", "delete", cliSnapshot])
            try Command.run(["btrfs", "subvolume", "delete", copy])
            try waitForCleaner()
            if round == 0 { continue }
            snapshot.samples += a.samples
            cli.samples += b.samples
            reflink.samples += c.samples
        }

        // With quotas on, a snapshot also accounts the new qgroup in its transaction.
        try store.setLimit(Self.name, bytes: UInt64(bytes) * 2)
        for round in 0..<rounds + 1 {
            var sample = Series("")
            try commit()
            _ = try sample.time { try store.snapshot(Self.name, tag: "q\(round)") }
            try store.deleteSnapshot(Self.name, tag: "q\(round)")
            try waitForCleaner()
            if round > 0 { quotas.samples += sample.samples }
        }
        try store.setLimit(Self.name, bytes: nil)
        try store.disableQuotas()

        // Exports into a pipe that another thread drains, as `tupp volume export | …` would.
        _ = try store.snapshot(Self.name, tag: "export")
        let tagged = VolumeReference(volume: Self.name, tag: "export")
        let snapshotPath = "\(pool)/volumes/.snapshots/\(Self.name)/export"
        var export = Series("volume.export.tupp"), live = Series("volume.export.tupp-live")
        var send = Series("volume.export.btrfs-send"), tar = Series("volume.export.tar")
        var tarCold = Series("volume.export.tar-cold")
        var streamBytes: UInt64 = 0, tarBytes: UInt64 = 0
        for round in 0..<rounds + 1 {
            var a = Series(""), b = Series(""), c = Series(""), d = Series(""), e = Series("")
            // Send evicts the file data it read (Linux 5.19+, "btrfs: send: avoid trashing the
            // page cache"), and a snapshot's files never share the volume's page cache: every
            // send reads from disk. tar of a fresh snapshot reads from disk too.
            let cold = "\(scratch)/cold\(round)"
            try Command.run(["btrfs", "subvolume", "snapshot", "-r", volume, cold])
            let steps: [() throws -> Void] = [
                { streamBytes = try a.time { try Self.drained { fd in _ = try store.export(tagged, to: fd) } } },
                { _ = try b.time { try Self.drained { fd in _ = try store.export(VolumeReference(volume: Self.name), to: fd) } } },
                { _ = try c.time { try Self.drained { fd in try Self.spawn(["btrfs", "send", "-q", snapshotPath], stdout: fd) } } },
                { tarBytes = try d.time { try Self.drained { fd in try Self.spawn(["tar", "-cf", "-", "-C", volume, "."], stdout: fd) } } },
                { _ = try e.time { try Self.drained { fd in try Self.spawn(["tar", "-cf", "-", "-C", cold, "."], stdout: fd) } } },
            ]
            for index in steps.indices { try steps[(index + round) % steps.count]() }
            try Command.run(["btrfs", "subvolume", "delete", cold])
            try waitForCleaner()
            if round == 0 { continue }  // warm-up: page cache
            export.samples += a.samples
            live.samples += b.samples
            send.samples += c.samples
            tar.samples += d.samples
            tarCold.samples += e.samples
        }
        try SeriesWriter(path: out).write([reflink, cli, snapshot, quotas, tar, tarCold, send, export, live])
        let meta = "{\"key\": \"meta.volume\", \"files\": \(files), \"bytes\": \(bytes), \"stream_bytes\": \(streamBytes), \"tar_bytes\": \(tarBytes)}\n"
        try Files.writeAtomically(out, text: ((try Files.readText(out)) ?? "") + meta, mode: 0o644)
    }

    /// `files` files in 100 directories, `bytes` in all, written and synced.
    func fill(_ root: String) throws {
        let size = bytes / files
        var chunk = [UInt8](repeating: 0, count: size)
        for index in chunk.indices { chunk[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 7) }
        for index in 0..<files {
            let directory = "\(root)/d\(index % 100)"
            if index < 100 { try Files.createDirectory(directory) }
            chunk[0] = UInt8(truncatingIfNeeded: index)  // no two files alike
            let fd = try FileDescriptor.open("\(directory)/f\(index)", O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
            try fd.writeAll(chunk, describedAs: "\(directory)/f\(index)")
        }
        try Command.run(["btrfs", "filesystem", "sync", root])
        progress("volume: \(files) files, \(size * files) bytes")
    }

    func commit() throws {
        try Command.run(["btrfs", "filesystem", "sync", pool])
    }

    /// Commit and wait for the cleaner, so no side is measured while deleted subvolumes are freed.
    func waitForCleaner() throws {
        try Command.run(["btrfs", "filesystem", "sync", pool])
        try Command.run(["btrfs", "subvolume", "sync", pool])
    }

    /// Runs `produce` with the write end of a pipe whose read end a second thread drains;
    /// the bytes that went through.
    static func drained(_ produce: (Int32) throws -> Void) throws -> UInt64 {
        var ends: [Int32] = [-1, -1]
        try Errno.check("create pipe", "export") { pipe(&ends) }
        for fd in ends { _ = tupp_set_cloexec(fd, 1) }
        // 1 MiB (fs.pipe-max-size's default) instead of 64 KiB: fewer wake-ups for every side alike.
        _ = fcntl(ends[1], 1031 /* F_SETPIPE_SZ */, Int32(1 << 20))
        let drain = Drain(fd: ends[0])
        try drain.start()
        defer {
            if ends[1] >= 0 { close(ends[1]) }
            drain.join()
            close(ends[0])
        }
        try produce(ends[1])
        close(ends[1])
        ends[1] = -1
        drain.join()
        return drain.count
    }

    static func spawn(_ arguments: [String], stdout: Int32) throws {
        let pid = try Spawn.start(arguments, stdout: stdout)
        let status = Spawn.wait(pid)
        guard status == 0 else { throw SystemError.failure("run", arguments.joined(separator: " "), "exit status \(status)") }
    }
}

/// Reads a descriptor to its end on its own thread, counting bytes.
final class Drain: @unchecked Sendable {
    let fd: Int32
    private(set) var count: UInt64 = 0
    private var thread = pthread_t()
    private var running = false

    init(fd: Int32) { self.fd = fd }

    func start() throws(SystemError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let drain = Unmanaged<Drain>.fromOpaque(raw!).takeRetainedValue()
            let size = 1 << 20
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
            defer { buffer.deallocate() }
            while true {
                let n = read(drain.fd, buffer, size)
                if n > 0 { drain.count += UInt64(n); continue }
                if n < 0 && errno == EINTR { continue }
                break
            }
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Drain>.fromOpaque(context).release()
            throw SystemError("start drain thread", "pthread_create", errno: rc)
        }
        running = true
    }

    func join() {
        guard running else { return }
        running = false
        pthread_join(thread, nil)
    }
}
