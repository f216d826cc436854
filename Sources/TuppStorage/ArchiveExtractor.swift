import CArchive
import CTuppSys
import Crypto
import Glibc
import TuppSystem

/// Where the tar reader gets its bytes: a file (`ArchiveInput`) or the decompressed
/// stream of one (`DecompressedInput`).
protocol ArchiveSource: AnyObject {
    /// Points `out` at the next block; its length, 0 at the end, -1 on error.
    func fill(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int
    /// Bytes consumed from the file so far (compressed bytes for a compressed layer).
    var bytesRead: UInt64 { get }
    /// What went wrong below the tar reader, once `fill` returned -1.
    var failure: SystemError? { get }
}

/// The bytes of an archive as libarchive pulls them: read from a descriptor in large
/// blocks, counted for progress and, when asked, hashed on a second thread on the way
/// through — the digest of exactly the bytes extracted, without a second read.
final class ArchiveInput: ArchiveSource {
    let fd: FileDescriptor
    let name: String
    private(set) var bytesRead: UInt64 = 0
    private var hasher: BackgroundHasher?
    private let buffers: [UnsafeMutableRawPointer]
    private var nextSlot = 0
    private static let bufferSize = 1 << 20
    fileprivate var readError: Int32 = 0
    var failure: SystemError? { readError != 0 ? SystemError("read", name, errno: readError) : nil }

    init(path: String, hashing: Bool) throws(SystemError) {
        fd = try FileDescriptor.open(path, O_RDONLY)
        name = path
        hasher = hashing ? try BackgroundHasher() : nil
        buffers = (0..<(hashing ? BackgroundHasher.slotCount : 1)).map { _ in
            UnsafeMutableRawPointer.allocate(byteCount: Self.bufferSize, alignment: 64)
        }
        posix_fadvise(fd.rawValue, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit {
        // The hashing thread may still be reading a buffer: stop it before freeing them.
        _ = hasher?.finish()
        buffers.forEach { $0.deallocate() }
    }

    /// libarchive keeps a returned block only until its next read, so a slot is free
    /// for reuse once the hasher has also let go of it.
    func fill(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        let slot = nextSlot
        nextSlot = (nextSlot + 1) % buffers.count
        hasher?.acquire(slot)
        let buffer = buffers[slot]
        while true {
            let n = read(fd.rawValue, buffer, Self.bufferSize)
            if n < 0 {
                if errno == EINTR { continue }
                readError = errno
                return -1
            }
            if n > 0 {
                bytesRead += UInt64(n)
                hasher?.submit(slot, UnsafeRawPointer(buffer), n)
            }
            out.pointee = UnsafeRawPointer(buffer)
            return n
        }
    }

    /// Reads whatever libarchive left unread (tar padding after the end marker) so the
    /// digest covers the whole blob, then returns "sha256:<hex>".
    func finishDigest() throws(SystemError) -> String? {
        guard let hasher else { return nil }
        var ignored: UnsafeRawPointer?
        while true {
            let n = fill(&ignored)
            if n < 0 { throw SystemError("read", name, errno: readError) }
            if n == 0 { break }
        }
        self.hasher = nil
        return "sha256:" + Hex.encode(hasher.finish())
    }
}

private let archiveRead: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeRawPointer?>?) -> la_ssize_t = { _, context, out in
    let input = Unmanaged<AnyObject>.fromOpaque(context!).takeUnretainedValue() as! any ArchiveSource
    return la_ssize_t(input.fill(out!))
}

/// How a layer blob is compressed, from its media type.
enum LayerCompression {
    case none, gzip, zstd
    /// Not said (a descriptor without media type): detected from the bytes.
    case detect

    init(mediaType: String?) {
        guard let mediaType else { self = .detect; return }
        if mediaType.hasSuffix("+gzip") || mediaType.hasSuffix(".tar.gzip") {
            self = .gzip
        } else if mediaType.hasSuffix("+zstd") {
            self = .zstd
        } else if mediaType.hasSuffix(".tar") {
            self = .none
        } else {
            self = .detect
        }
    }
}

/// A layer blob's uncompressed stream: one libarchive reader with the "raw" format and
/// the decompression the media type names — applied exactly once, not by sniffing,
/// so a layer is read the way the image's DiffIDs were computed — turns the file into
/// the tar bytes the tar reader then parses, and those bytes are hashed on the way:
/// the layer's DiffID, which the image config lists and the layer store keys layers by.
final class DecompressedInput: ArchiveSource {
    let file: ArchiveInput
    private let archive: OpaquePointer
    private var hasher = SHA256()
    private(set) var uncompressedBytes: UInt64 = 0
    private var ended = false
    private(set) var failure: SystemError?
    private let label: String

    var bytesRead: UInt64 { file.bytesRead }

    init(_ file: ArchiveInput, compression: LayerCompression, label: String) throws(SystemError) {
        if let why = tupp_archive_load() {
            throw SystemError.failure("load libarchive to read", label, String(cString: why))
        }
        guard let archive = archive_read_new() else {
            throw SystemError.failure("read layer", label, "libarchive: out of memory")
        }
        self.file = file
        self.archive = archive
        self.label = label
        switch compression {
        case .none: break
        case .gzip: archive_read_append_filter(archive, ARCHIVE_FILTER_GZIP)
        case .zstd: archive_read_append_filter(archive, ARCHIVE_FILTER_ZSTD)
        case .detect: archive_read_support_filter_all(archive)
        }
        archive_read_support_format_raw(archive)
        let context = Unmanaged.passUnretained(file as AnyObject).toOpaque()
        var entry: OpaquePointer?
        guard archive_read_open(archive, context, nil, archiveRead, nil) == ARCHIVE_OK,
              archive_read_next_header(archive, &entry) == ARCHIVE_OK else {
            let error = Self.error(archive, "decompress layer", label, file: file)
            archive_read_free(archive)
            throw error
        }
    }

    deinit {
        archive_read_free(archive)
    }

    func fill(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        if ended { return 0 }
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        let status = archive_read_data_block(archive, &block, &size, &offset)
        if status == ARCHIVE_EOF {
            ended = true
            return 0
        }
        if status < ARCHIVE_WARN {
            failure = Self.error(archive, "decompress layer", label, file: file)
            return -1
        }
        hasher.update(bufferPointer: UnsafeRawBufferPointer(start: block, count: size))
        uncompressedBytes += UInt64(size)
        out.pointee = block
        return size
    }

    /// Reads what the tar reader left (padding after the end marker) so the digest
    /// covers the whole stream, then returns the DiffID "sha256:<hex>".
    func finishDiffID() throws(SystemError) -> String {
        var ignored: UnsafeRawPointer?
        while true {
            let n = fill(&ignored)
            if n < 0 { throw failure ?? SystemError.failure("decompress layer", label, "read failed") }
            if n == 0 { break }
        }
        return "sha256:" + Hex.encode(hasher.finalize())
    }

    private static func error(_ archive: OpaquePointer, _ operation: String, _ label: String, file: ArchiveInput) -> SystemError {
        if let failure = file.failure { return failure }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        let code = archive_errno(archive)
        return SystemError(operation, label, errno: code > 0 ? code : 0, detail: "libarchive: \(message)")
    }
}

/// Reads a tar stream (plain, gzip, zstd, xz, bzip2 — whatever libarchive detects) and
/// hands each entry to a `RootfsWriter`. libarchive is used only to read: validation
/// and every write are tupp's own.
struct ArchiveExtractor {
    var progress: ProgressMeter

    /// Extracts `input` into `writer`; `label` names the archive (and layer) in errors.
    /// A `DecompressedInput` is read as plain tar (it did the decompressing); a file
    /// may be compressed in any way libarchive detects.
    func extract(_ input: any ArchiveSource, into writer: RootfsWriter, label: String) throws {
        if let why = tupp_archive_load() {
            throw SystemError.failure("load libarchive to read", label, String(cString: why))
        }
        guard let archive = archive_read_new() else {
            throw SystemError.failure("read archive", label, "libarchive: out of memory")
        }
        defer { archive_read_free(archive) }
        if input is ArchiveInput { archive_read_support_filter_all(archive) }
        archive_read_support_format_tar(archive)
        let context = Unmanaged.passUnretained(input as AnyObject).toOpaque()
        guard archive_read_open(archive, context, nil, archiveRead, nil) == ARCHIVE_OK else {
            throw libarchiveError(archive, "open archive", label, input: input)
        }
        defer { withExtendedLifetime(input) {} }
        var entry: OpaquePointer?
        var count = 0
        while true {
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { break }
            if status < ARCHIVE_WARN || entry == nil {
                throw libarchiveError(archive, "read archive entry", label, input: input)
            }
            let header = try makeHeader(entry!, writer: writer)
            try writer.apply(header) { fd in
                try copyData(archive, to: fd, header: header, label: label, input: input)
            }
            count += 1
            if count & 63 == 0 {
                if Task.isCancelled { throw CancellationError() }
                progress.update(bytes: input.bytesRead, entries: writer.entriesWritten)
            }
        }
        progress.update(bytes: input.bytesRead, entries: writer.entriesWritten)
    }

    private func libarchiveError(_ archive: OpaquePointer, _ operation: String, _ label: String,
                                 input: any ArchiveSource) -> SystemError {
        if let failure = input.failure { return failure }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        let code = archive_errno(archive)
        return SystemError(operation, label, errno: code > 0 ? code : 0, detail: "libarchive: \(message)")
    }

    /// The entry's header, validated: paths normalized and refused when absolute or
    /// climbing with "..", in hard link targets too.
    private func makeHeader(_ entry: OpaquePointer, writer: RootfsWriter) throws -> EntryHeader {
        guard let rawPath = archive_entry_pathname(entry) else {
            throw writer.refusal("?", "entry without a path")
        }
        guard let pathText = String(validatingCString: rawPath) else {
            throw writer.refusal(String(cString: rawPath), PathProblem.notUTF8.description)
        }
        let path: String
        switch RootfsPath.normalize(pathText) {
        case .success(let normalized): path = normalized
        case .failure(let problem): throw writer.refusal(pathText, problem.description)
        }
        let mode = archive_entry_mode(entry)
        let kind: EntryHeader.Kind
        if let rawTarget = archive_entry_hardlink(entry) {
            guard let targetText = String(validatingCString: rawTarget) else {
                throw writer.refusal(path, "hard link target is not valid UTF-8")
            }
            switch RootfsPath.normalize(targetText) {
            case .success(let target) where !target.isEmpty: kind = .hardlink(target: target)
            case .success: throw writer.refusal(path, "hard link to the root directory")
            case .failure(let problem): throw writer.refusal(path, "hard link target \(targetText): \(problem)")
            }
        } else {
            switch mode & UInt32(Glibc.S_IFMT) {
            case UInt32(Glibc.S_IFREG): kind = .regular
            case UInt32(Glibc.S_IFDIR): kind = .directory
            case UInt32(Glibc.S_IFLNK):
                guard let rawTarget = archive_entry_symlink(entry),
                      let target = String(validatingCString: rawTarget) else {
                    throw writer.refusal(path, "symlink without a valid UTF-8 target")
                }
                kind = .symlink(target: target)
            case UInt32(Glibc.S_IFIFO): kind = .fifo
            case UInt32(Glibc.S_IFCHR), UInt32(Glibc.S_IFBLK):
                kind = .device(character: mode & UInt32(Glibc.S_IFMT) == UInt32(Glibc.S_IFCHR),
                               major: UInt32(truncatingIfNeeded: archive_entry_rdevmajor(entry)),
                               minor: UInt32(truncatingIfNeeded: archive_entry_rdevminor(entry)))
            case UInt32(Glibc.S_IFSOCK): kind = .socket
            default:
                throw writer.refusal(path, "unknown entry type \(String(mode & UInt32(Glibc.S_IFMT), radix: 8))")
            }
        }
        var header = EntryHeader(path: path, kind: kind, permissions: mode_t(mode & 0o7777),
                                 uid: uid_t(truncatingIfNeeded: archive_entry_uid(entry)),
                                 gid: gid_t(truncatingIfNeeded: archive_entry_gid(entry)))
        header.size = archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : 0
        if archive_entry_mtime_is_set(entry) != 0 {
            header.modificationTime = timespec(tv_sec: archive_entry_mtime(entry), tv_nsec: archive_entry_mtime_nsec(entry))
        } else {
            header.modificationTime = timespec(tv_sec: 0, tv_nsec: utimeNow)
        }
        if archive_entry_atime_is_set(entry) != 0 {
            header.accessTime = timespec(tv_sec: archive_entry_atime(entry), tv_nsec: archive_entry_atime_nsec(entry))
        }
        if archive_entry_xattr_reset(entry) > 0 {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK {
                guard let name else { continue }
                let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                header.xattrs.append((String(cString: name), bytes))
            }
        }
        return header
    }

    /// Copies the entry's data blocks, keeping holes: blocks are written at their
    /// offsets and the file is extended to its full size at the end.
    private func copyData(_ archive: OpaquePointer, to fd: Int32, header: EntryHeader,
                          label: String, input: any ArchiveSource) throws {
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        var end: Int64 = 0
        while true {
            let status = archive_read_data_block(archive, &block, &size, &offset)
            if status == ARCHIVE_EOF { break }
            if status < ARCHIVE_WARN {
                var error = libarchiveError(archive, "read data", label, input: input)
                error.object = "\(label): \(header.path)"
                throw error
            }
            var written = 0
            while written < size {
                let n = pwrite(fd, block! + written, size - written, off_t(offset) + off_t(written))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", "\(label): \(header.path)")
                }
                written += n
            }
            end = max(end, offset + Int64(size))
        }
        if end < header.size {
            if ftruncate(fd, off_t(header.size)) != 0 { throw SystemError("extend sparse file", "\(label): \(header.path)") }
        }
    }
}

/// UTIME_NOW (a macro Swift does not import): "set this time to now".
private let utimeNow = (1 << 30) - 1

enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
