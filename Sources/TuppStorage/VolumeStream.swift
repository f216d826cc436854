import CTuppSys
import Glibc
import Subprocess
import SystemPackage
import TuppFacts
import TuppSystem

// Export and import of volumes as btrfs send streams.
//
// Export asks the kernel itself for the stream (BTRFS_IOC_SEND writes it to the output
// descriptor): no process, no copy through user space, and nothing of the format in tupp.
// Import needs the other half, which only exists in btrfs-progs (libbtrfsutil has no
// receive and no library parses the format): `btrfs receive` runs as a subprocess, chrooted
// into the volume's snapshot directory, and every command reaches it through
// SendStreamCheck first (receive alone trusts the stream: see SendStreamCheck).

extension VolumeStore {
    public struct ExportedStream: Sendable, Equatable {
        public var volume: String
        /// The snapshot the stream carries; an import makes it NAME@TAG.
        public var tag: String
        /// The snapshot it is incremental against (`since`), nil for a full stream.
        public var parent: String?
        /// Bytes written, when the output is a regular file; nil for a pipe or socket.
        public var bytes: UInt64?
    }

    /// Writes a send stream of NAME@TAG — or, without a tag, of the live volume through a
    /// temporary read-only snapshot, so the stream is crash-consistent — to `output`.
    /// With `since`, only the differences from NAME@SINCE, which the receiving pool must
    /// hold. A live export's stream carries a UTC timestamp tag; its snapshot is deleted
    /// afterwards (so it cannot be a later `since`: snapshot with a tag for chains).
    /// Blocks until the kernel wrote everything. A pipe whose reader is gone raises SIGPIPE.
    /// A regular file must be empty or open for appending (see `prepareOutput`).
    public func export(_ reference: VolumeReference, since parent: String? = nil, to output: Int32,
                       checkpoint: Checkpoint = { _ in }) throws -> ExportedStream {
        let name = reference.volume
        try VolumeNames.validate(volume: name)
        if let tag = reference.tag { try VolumeNames.validate(tag: tag) }
        if let parent { try VolumeNames.validate(tag: parent) }
        let snapshots = "\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)/\(name)"

        var parentID: UInt64 = 0
        if let parent {
            let fd = try openSnapshot(name, tag: parent)
            parentID = try Btrfs.info(fd, path: "\(snapshots)/\(parent)").id
            if reference.tag == parent {
                throw SystemError.failure("export", "\(name)@\(parent)", "a snapshot cannot be exported against itself")
            }
        }
        let sizeBefore = try Self.prepareOutput(output)
        if let tag = reference.tag {
            let source = try openSnapshot(name, tag: tag)
            try Self.send(source, to: output, parent: parentID, describedAs: "\(snapshots)/\(tag)")
            return ExportedStream(volume: name, tag: tag, parent: parent, bytes: Self.finishOutput(output, sizeBefore: sizeBefore))
        }

        // Live: a read-only snapshot first, in its own staging directory, named as the tag.
        let volume = try openVolume(name)
        let volumes = try openVolumesDirectory()
        let staging = try openStagingDirectory(volumes)
        let directoryName = Self.stagingName(.export, name)
        let directoryPath = "\(poolRoot)/\(Self.directory)/\(Self.stagingDirectory)/\(directoryName)"
        let tag = VolumeNames.timestampTag(secondsSinceEpoch: Int(wallClockSeconds()))
        checkpoint("volume \(name): snapshot for export")
        let directory = try Self.openDirectory(directoryName, in: staging, describedAs: directoryPath)
        defer {
            try? Btrfs.deleteSubvolume(in: directory, named: tag, describedAs: "\(directoryPath)/\(tag)")
            _ = unlinkat(staging.rawValue, directoryName, AT_REMOVEDIR)
        }
        try Btrfs.createSnapshot(of: volume, in: directory, named: tag, readOnly: true,
                                 describedAs: "\(poolRoot)/\(Self.directory)/\(name) → \(directoryPath)/\(tag)")
        let source = try directory.openAt(tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: "\(directoryPath)/\(tag)")
        checkpoint("volume \(name): send")
        try Self.send(source, to: output, parent: parentID, describedAs: "\(poolRoot)/\(Self.directory)/\(name)")
        checkpoint("volume \(name): delete export snapshot")
        return ExportedStream(volume: name, tag: tag, parent: parent, bytes: Self.finishOutput(output, sizeBefore: sizeBefore))
    }

    public struct ImportedVolume: Sendable, Equatable {
        public var volume: SubvolumeInfo
        /// The received snapshot, kept as NAME@TAG: the parent the next incremental stream needs.
        public var snapshot: VolumeSnapshotFacts
        /// False when the stream's snapshot was there already (a retry): nothing was received.
        public var received: Bool
        /// An existing volume was replaced.
        public var replaced: Bool
        /// The tag of the snapshot that keeps the replaced volume's content, when that
        /// content existed nowhere else; nil when nothing had to be kept.
        public var previousKeptAs: String?
    }

    /// Receives a send stream from `input` into the pool as volume NAME. The stream's
    /// subvolume is kept read-only as NAME@TAG (TAG is the name it was sent under), and the
    /// volume becomes a writable snapshot of it. An incremental stream needs its parent
    /// among NAME's snapshots: import the streams of a chain in order. Importing a stream
    /// whose snapshot is already there (a retry) only makes the volume.
    ///
    /// An existing volume is refused (EEXIST) unless `replacing`; then it must not be in
    /// use, is swapped out in one rename and deleted — after a read-only snapshot
    /// NAME@replaced-TIME keeps it, unless it was unchanged since it was made from a
    /// snapshot that still exists. Its qgroup limit carries over.
    ///
    /// `btrfs receive` runs chrooted into volumes/.snapshots/NAME (a received subvolume
    /// cannot be moved to another directory once read-only), and every command of the
    /// stream passes SendStreamCheck before it gets there. Until receive finishes, its
    /// subvolume is writable, which is how an interrupted one is told from a snapshot (a
    /// leftover, removed here first: callers hold the host lock). A failure removes what
    /// was received.
    public func importStream(into name: String, from input: Int32, replacing: Bool = false,
                             checkpoint: Checkpoint = { _ in }) async throws -> ImportedVolume {
        try VolumeNames.validate(volume: name)
        let volumes = try openVolumesDirectory()
        let volumePath = "\(poolRoot)/\(Self.directory)/\(name)"
        let exists = faccessat(volumes.rawValue, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0
        if exists && !replacing {
            throw SystemError("import volume", volumePath, errno: EEXIST, detail: "the volume exists; replace it explicitly")
        }
        // Before the stream is read, not only before the swap: a receive can take long.
        if exists { try images.refuseWhileMounted(volumePath, operation: "replace volume") }
        var before = try contents()
        for leftover in before.leftovers where leftover.volume == name && leftover.kind == .receive {
            try removeLeftover(leftover, checkpoint: checkpoint)
            before = try contents()
        }
        let staging = try openStagingDirectory(volumes)
        let snapshots = try openSnapshotDirectory(of: name)
        let snapshotsPath = "\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)/\(name)"

        checkpoint("volume \(name): receive stream")
        let received = try await receive(from: input, into: snapshots, at: snapshotsPath, volume: name,
                                         snapshots: before.snapshots[name] ?? [:])
        let tag = received.tag
        let snapshotPath = "\(snapshotsPath)/\(tag)"
        let kept = try snapshots.openAt(tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: snapshotPath)
        let snapshotInfo = try Btrfs.info(kept, path: "\(Self.directory)/\(Self.snapshotsDirectory)/\(name)/\(tag)")

        // The volume: a writable snapshot of it, moved into place (or swapped with the old one).
        let temporary = Self.stagingName(.create, name)
        let temporaryPath = "\(poolRoot)/\(Self.directory)/\(Self.stagingDirectory)/\(temporary)"
        checkpoint("volume \(name): writable snapshot of \(tag)")
        try Btrfs.createSnapshot(of: kept, in: staging, named: temporary, describedAs: "\(snapshotPath) → \(temporaryPath)")
        var keptAs: String?
        do {
            let fresh = try staging.openAt(temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: temporaryPath)
            if exists, let old = before.volumes[name] {
                try images.refuseWhileMounted(volumePath, operation: "replace volume")
                if let limit = old.usage?.limit {
                    checkpoint("volume \(name): carry the qgroup limit over")
                    try Quotas.setLimit(try openRoot(), subvolume: try Btrfs.info(fresh, path: temporaryPath).id, bytes: limit,
                                        describedAs: temporaryPath)
                }
                if Self.mustKeep(old.subvolume, among: before) {
                    let keepTag = "replaced-\(VolumeNames.timestampTag(secondsSinceEpoch: Int(wallClockSeconds())))"
                    _ = try snapshot(name, tag: keepTag, checkpoint: checkpoint)
                    keptAs = keepTag
                }
                try Btrfs.sync(fresh, describedAs: temporaryPath)
                checkpoint("volume \(name): swap in the imported volume")
                try Errno.check("swap imported volume into place", "\(temporaryPath) ⇄ \(volumePath)") {
                    tupp_renameat2(staging.rawValue, temporary, volumes.rawValue, name, UInt32(TUPP_RENAME_EXCHANGE))
                }
            } else {
                try Btrfs.sync(fresh, describedAs: temporaryPath)
                checkpoint("volume \(name): move into place")
                try Errno.check("move imported volume into place", "\(temporaryPath) → \(volumePath)") {
                    tupp_renameat2(staging.rawValue, temporary, volumes.rawValue, name, UInt32(TUPP_RENAME_NOREPLACE))
                }
            }
        } catch {
            try? Btrfs.deleteSubvolume(in: staging, named: temporary, describedAs: temporaryPath)
            throw error
        }
        if exists {
            // The old volume now sits at the temporary name; what it held is kept or was nowhere needed.
            checkpoint("volume \(name): delete the replaced volume")
            try Btrfs.deleteSubvolume(in: staging, named: temporary, describedAs: "\(temporaryPath) (the replaced volume)")
        }
        let placed = try volumes.openAt(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: volumePath)
        return ImportedVolume(volume: try Btrfs.info(placed, path: "\(Self.directory)/\(name)"),
                              snapshot: VolumeSnapshotFacts(volume: name, tag: tag, subvolume: snapshotInfo, usage: nil),
                              received: received.fresh, replaced: exists, previousKeptAs: keptAs)
    }

    /// Whether deleting `volume` would lose data: unless nothing was written to it after
    /// the transaction that made it and it is empty-born or a snapshot that still exists.
    static func mustKeep(_ volume: SubvolumeInfo, among contents: VolumeContents) -> Bool {
        guard volume.generation == volume.createdGeneration else { return true }
        guard let parent = volume.parentUUID else { return false }
        let known = contents.snapshots.values.flatMap { $0.values.map(\.subvolume.uuid) }
        return !known.contains(parent)
    }

    /// Runs `btrfs receive`, chrooted into `directory`, with the checked stream on its
    /// stdin; the tag of the read-only subvolume that arrived. When the stream's snapshot
    /// is there already, complete and from the same sender, nothing is received. A failure
    /// deletes the unfinished subvolume.
    private func receive(from input: Int32, into directory: FileDescriptor, at path: String, volume: String,
                         snapshots: [String: VolumeSnapshotFacts]) async throws -> (tag: String, fresh: Bool) {
        var allowed: Set<[UInt8]> = []
        var byUUID: [[UInt8]: String] = [:]
        for (tag, snapshot) in snapshots {
            for uuid in [snapshot.subvolume.uuid, snapshot.subvolume.receivedUUID].compactMap({ $0 }) {
                if let bytes = SendStreamCheck.uuidBytes(uuid) {
                    allowed.insert(bytes)
                    byUUID[bytes] = tag
                }
            }
        }
        let check = SendStreamCheck(allowedParents: allowed) { uuid, clonePath in
            guard let tag = byUUID[uuid], let root = try? directory.openAt(tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) else {
                return false
            }
            let fd = tupp_openat2(root.rawValue, clonePath, UInt64(TUPP_O_PATH | O_CLOEXEC), 0,
                                  UInt64(TUPP_RESOLVE_BENEATH | TUPP_RESOLVE_NO_SYMLINKS | TUPP_RESOLVE_NO_XDEV))
            if fd < 0 { return false }
            close(fd)
            return true
        }
        // Decided when the stream names its subvolume, before receive sees that command.
        let arrival: (String, [UInt8]) -> StreamPump.Arrival = { tag, uuid in
            guard let existing = snapshots[tag] else { return .receive }
            if let received = existing.subvolume.receivedUUID, SendStreamCheck.uuidBytes(received) == uuid { return .alreadyThere }
            return .refuse("\(volume)@\(tag) exists and holds something else")
        }
        // A socket rather than a pipe: the pump writes with MSG_NOSIGNAL, so a receive that
        // dies early is an EPIPE here, not a SIGPIPE that kills tupp.
        var pair: [Int32] = [-1, -1]
        try Errno.check("create socket pair for", "btrfs receive") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair)
        }
        let pump = StreamPump(input: input, output: FileDescriptor(adopting: pair[1]), check: check, arrival: arrival)
        do { try pump.start() } catch {
            _ = close(pair[0])
            throw error
        }
        defer { pump.join() }
        let status: TerminationStatus
        let message: String
        do {
            let result = try await run(Self.btrfsExecutable, arguments: ["receive", "--chroot", "-e", "-E", "1", path],
                                       input: .fileDescriptor(SystemPackage.FileDescriptor(rawValue: pair[0]), closeAfterSpawningProcess: true),
                                       output: .discarded, error: .string(limit: 64 << 10))
            status = result.terminationStatus
            message = result.standardError.trimmingCharacters()
        } catch {
            pump.cancel()
            throw error
        }
        pump.join()
        let tag = pump.check.subvolumeName
        if pump.alreadyThere, let tag { return (tag, false) }
        do {
            if let rejection = pump.rejection {
                throw SystemError.failure("import volume \(volume)", "stream", "refused: \(rejection.reason)")
            }
            if let failure = pump.failure { throw failure }
            guard status.isSuccess else {
                throw SystemError.failure("import volume \(volume)", "btrfs receive into \(path)", "\(status): \(message)")
            }
            guard let tag, pump.check.ended else {
                throw SystemError.failure("import volume \(volume)", "stream", "it ended before its end command (truncated?)")
            }
            let fd = try directory.openAt(tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, describedAs: "\(path)/\(tag)")
            let info = try Btrfs.info(fd, path: "\(path)/\(tag)")
            guard Btrfs.isSubvolume(fd), info.readOnly, info.receivedUUID != nil else {
                throw SystemError.failure("import volume \(volume)", "\(path)/\(tag)", "btrfs receive did not finish it (not read-only)")
            }
            return (tag, true)
        } catch {
            // Only an unfinished subvolume is ours to remove; a complete snapshot of that name was there before.
            if let tag, let fd = try? directory.openAt(tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), Btrfs.isSubvolume(fd),
               let info = try? Btrfs.info(fd, path: "\(path)/\(tag)"), !info.readOnly {
                try? Btrfs.deleteSubvolume(in: directory, named: tag, describedAs: "\(path)/\(tag)")
            }
            _ = rmdir(path)  // the volume's snapshot directory, when this was to be its first
            throw error
        }
    }

    static var btrfsExecutable: Executable {
        let candidates = ["/usr/bin/btrfs", "/bin/btrfs", "/usr/sbin/btrfs", "/sbin/btrfs"]
        return candidates.first { access($0, X_OK) == 0 }.map { .path(FilePath($0)) } ?? .name("btrfs")
    }

    // MARK: - Helpers

    func openSnapshot(_ name: String, tag: String) throws -> FileDescriptor {
        let path = "\(poolRoot)/\(Self.directory)/\(Self.snapshotsDirectory)/\(name)/\(tag)"
        let raw = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 {
            let code = errno
            throw SystemError("open snapshot", path, errno: code, detail: code == ENOENT ? "no snapshot \(name)@\(tag)" : nil)
        }
        let fd = FileDescriptor(adopting: raw)
        guard Btrfs.isSubvolume(fd), try Btrfs.info(fd, path: path).readOnly else {
            throw SystemError.failure("open snapshot", path, "not a read-only subvolume")
        }
        return fd
    }

    static func send(_ source: FileDescriptor, to output: Int32, parent: UInt64, describedAs object: String) throws(SystemError) {
        if tupp_btrfs_send(source.rawValue, output, parent) != 0 {
            let code = errno
            throw SystemError("send", object, errno: code,
                              detail: code == EPIPE ? "the reader of the stream went away" : nil)
        }
    }

    /// A regular-file output's size before the stream. The kernel writes the stream from
    /// offset 0 whatever the file position (btrfs send hides this behind a pipe), so such
    /// a file must be empty at its start, or opened to append.
    static func prepareOutput(_ fd: Int32) throws(SystemError) -> UInt64? {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let appending = fcntl(fd, F_GETFL) & O_APPEND != 0
        guard appending || (st.st_size == 0 && lseek(fd, 0, SEEK_CUR) == 0) else {
            throw SystemError.failure("export to", "file descriptor \(fd)",
                                      "a file output must be empty or opened for appending (>>), or be a pipe")
        }
        return UInt64(st.st_size)
    }

    /// Bytes the stream added to a regular-file output, whose position then follows them.
    static func finishOutput(_ fd: Int32, sizeBefore: UInt64?) -> UInt64? {
        var st = stat()
        guard let sizeBefore, fstat(fd, &st) == 0, UInt64(st.st_size) >= sizeBefore else { return nil }
        _ = lseek(fd, st.st_size, SEEK_SET)
        return UInt64(st.st_size) - sizeBefore
    }
}

/// Copies a send stream to `btrfs receive` on its own thread, command by command through
/// SendStreamCheck: a command reaches receive only after it passed. Stops at the end
/// command, at a rejection (closing the socket, so receive fails on a short stream) or
/// when receive stops reading.
final class StreamPump: @unchecked Sendable {
    /// What to do once the stream has named its subvolume (tag, UUID).
    enum Arrival { case receive, alreadyThere, refuse(String) }

    private let input: Int32
    private var output: FileDescriptor?
    private let arrival: (String, [UInt8]) -> Arrival
    private(set) var check: SendStreamCheck
    /// The stream's snapshot exists already; nothing was passed on.
    private(set) var alreadyThere = false
    private(set) var rejection: SendStreamCheck.Rejection?
    private(set) var failure: SystemError?
    private var thread = pthread_t()
    private var running = false
    private let cancelled = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init(input: Int32, output: FileDescriptor, check: SendStreamCheck, arrival: @escaping (String, [UInt8]) -> Arrival) {
        self.input = input
        self.output = output
        self.check = check
        self.arrival = arrival
        cancelled.initialize(to: 0)
    }

    deinit { cancelled.deallocate() }

    func start() throws(SystemError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<StreamPump>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<StreamPump>.fromOpaque(context).release()
            throw SystemError("start stream thread", "pthread_create", errno: rc)
        }
        running = true
    }

    func join() {
        guard running else { return }
        running = false
        pthread_join(thread, nil)
    }

    /// Makes the pump stop at its next write (receive could not be started).
    func cancel() {
        cancelled.pointee = 1
        if let output { shutdown(output.rawValue, Int32(SHUT_RDWR)) }
    }

    private func run() {
        defer { output = nil }  // closes the socket: receive sees the end of its input
        do {
            try pump()
        } catch let error as SendStreamCheck.Rejection {
            rejection = error
        } catch let error as SystemError {
            failure = error
        } catch {
            failure = SystemError.failure("copy stream", "btrfs receive", "\(error)")
        }
    }

    private func pump() throws {
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        var filled = 0
        var headerDone = false
        var atEOF = false
        while !check.ended {
            if filled == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", "the send stream")
            }
            if n == 0 { atEOF = true }
            filled += n
            // Judge every complete command in the buffer, then pass them on together.
            var passed = 0
            try buffer.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) throws in
                if !headerDone {
                    guard filled >= SendStreamCheck.headerSize else { return }
                    try check.checkHeader(UnsafeRawBufferPointer(rebasing: bytes[0..<SendStreamCheck.headerSize]))
                    headerDone = true
                    passed = SendStreamCheck.headerSize
                }
                while !check.ended, filled - passed >= SendStreamCheck.commandHeaderSize {
                    let header = UnsafeRawBufferPointer(rebasing: bytes[passed..<passed + SendStreamCheck.commandHeaderSize])
                    let length = try SendStreamCheck.payloadLength(ofCommandHeader: header)
                    let end = passed + SendStreamCheck.commandHeaderSize + length
                    guard end <= filled else { break }
                    let named = check.subvolumeName != nil
                    try check.check(command: header,
                                    payload: UnsafeRawBufferPointer(rebasing: bytes[passed + SendStreamCheck.commandHeaderSize..<end]))
                    if !named, let tag = check.subvolumeName, let uuid = check.subvolumeUUID {
                        switch arrival(tag, uuid) {
                        case .receive: break
                        case .alreadyThere:
                            alreadyThere = true
                            return
                        case .refuse(let reason):
                            throw SendStreamCheck.Rejection(reason: reason)
                        }
                    }
                    passed = end
                }
                try send(UnsafeRawBufferPointer(rebasing: bytes[0..<passed]))
            }
            if alreadyThere { return }
            buffer.withUnsafeMutableBytes { bytes in
                if passed > 0 && passed < filled {
                    memmove(bytes.baseAddress!, bytes.baseAddress! + passed, filled - passed)
                }
            }
            filled -= passed
            if atEOF {
                if !check.ended {
                    throw SendStreamCheck.Rejection(reason: filled > 0 || !headerDone ? "the stream is truncated" : "the stream has no end command")
                }
                break
            }
        }
    }

    private func send(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        guard let output else { return }
        var offset = 0
        while offset < bytes.count {
            if cancelled.pointee != 0 { throw SystemError.failure("copy stream", "btrfs receive", "cancelled") }
            let n = Glibc.send(output.rawValue, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("copy stream to", "btrfs receive", detail: errno == EPIPE ? "it stopped reading" : nil)
            }
            offset += n
        }
    }
}
