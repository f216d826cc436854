import Crypto
import CTuppSys
import Glibc
import TuppBase
import TuppManifest
import TuppRegistry
import TuppSystem

/// "sha256:<hex>" identities of image sources, cached so an unchanged 200 MB tarball is
/// not hashed again on every plan.
///
/// A file's digest is reused while its (device, inode, size, mtime, ctime) stamp is
/// unchanged; ctime moves on any write or metadata change and cannot be set from user
/// space, so a rewritten file is always noticed.
struct SourceIdentity {
    /// nil: hash without reading or writing a cache.
    let cacheDirectory: String?
    /// False: read the cache but never write it (a plan changes nothing on the host).
    var updatesCache = true

    struct CacheFile {
        /// Key: path relative to the source ("" for a single file) → stamp and digest.
        var entries: [String: Entry] = [:]
        struct Entry: Equatable { var stamp: String; var digest: String }

        init() {}

        init?(json: JSON.Node) {
            guard case .object(let pairs)? = json["entries"] else { return nil }
            for (key, node) in pairs {
                guard let stamp = node["stamp"]?.string, let digest = node["digest"]?.string else { return nil }
                entries[key] = Entry(stamp: stamp, digest: digest)
            }
        }

        var json: JSON.Node {
            .object([("entries", .object(entries.keys.sorted().map { key in
                (key, .object([("digest", .string(entries[key]!.digest)), ("stamp", .string(entries[key]!.stamp))]))
            }))])
        }
    }

    func identify(_ source: Image.Source) throws -> String {
        switch source {
        case .tar(let path), .busybox(let path):
            var cache = loadCache(for: path)
            let digest = try fileDigest(path, key: "", cache: &cache)
            try saveCache(cache, for: path)
            return digest
        case .oci(let layout, let tag):
            return try OCILayout(path: layout).resolve(tag: tag).digest
        case .registry(let registry):
            // One HEAD for a tag, no request for a digest.
            let source = try RegistrySource(registry)
            return try RegistryClient(reference: source.reference, options: RegistryOptions(security: source.security)).resolve()
        case .directory(let path):
            var cache = loadCache(for: path)
            var used = CacheFile()
            let digest = try treeDigest(path, cache: cache, used: &used)
            cache = used
            try saveCache(cache, for: path)
            return digest
        }
    }

    /// The cached digest of the file open at `fd`, if its stamp is unchanged since it
    /// was hashed.
    func cachedDigest(of path: String, fd: FileDescriptor) throws(SystemError) -> (digest: String?, stamp: String) {
        var st = stat()
        try Errno.check("stat", path) { fstat(fd.rawValue, &st) }
        let stamp = Self.stamp(st)
        let cached = loadCache(for: path).entries[""]
        return (cached?.stamp == stamp ? cached?.digest : nil, stamp)
    }

    /// Records a digest computed elsewhere (during an import) for the file's stamp.
    func store(_ digest: String, of path: String, stamp: String) throws {
        var cache = loadCache(for: path)
        cache.entries[""] = .init(stamp: stamp, digest: digest)
        try saveCache(cache, for: path)
    }

    static func stamp(_ st: stat) -> String {
        "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec):\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
    }

    /// sha256 of a file, from the cache when its stamp still matches.
    private func fileDigest(_ path: String, key: String, cache: inout CacheFile) throws -> String {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        var st = stat()
        try Errno.check("stat", path) { fstat(fd.rawValue, &st) }
        let stamp = Self.stamp(st)
        if let cached = cache.entries[key], cached.stamp == stamp { return cached.digest }
        let digest = try Self.hash(fd, path: path)
        cache.entries[key] = .init(stamp: stamp, digest: digest)
        return digest
    }

    static func hash(_ fd: FileDescriptor, path: String) throws(SystemError) -> String {
        var hasher = SHA256()
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = try Errno.check("read", path) { read(fd.rawValue, buffer, size) }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
        }
        return "sha256:" + Hex.encode(hasher.finalize())
    }

    /// sha256 over a canonical listing of the tree: per entry its path, type, mode,
    /// owner, and content digest / link target / device number.
    private func treeDigest(_ root: String, cache: CacheFile, used: inout CacheFile) throws -> String {
        var hasher = SHA256()
        var lookup = cache
        func visit(_ relative: String) throws {
            let path = relative.isEmpty ? root : "\(root)/\(relative)"
            guard let st = try Files.status(path) else { throw SystemError("stat", path, errno: ENOENT) }
            var line = "\(relative)\u{0}\(st.st_mode)\u{0}\(st.st_uid)\u{0}\(st.st_gid)\u{0}"
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let digest = try fileDigest(path, key: relative, cache: &lookup)
                used.entries[relative] = lookup.entries[relative]
                line += digest
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = try Errno.check("read symlink", path) { readlink(path, &buffer, buffer.count - 1) }
                line += String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            case S_IFCHR, S_IFBLK:
                line += "\(st.st_rdev)"
            default:
                break
            }
            line += "\n"
            hasher.update(data: Array(line.utf8))
            if (st.st_mode & S_IFMT) == S_IFDIR {
                for name in try Files.list(path) { try visit(relative.isEmpty ? name : "\(relative)/\(name)") }
            }
        }
        try visit("")
        return "sha256:" + Hex.encode(hasher.finalize())
    }

    private func cachePath(for source: String) -> String? {
        guard let cacheDirectory else { return nil }
        let canonical = Paths.canonical(source) ?? source
        let key = Hex.encode(SHA256.hash(data: Array(canonical.utf8))).prefix(24)
        return "\(cacheDirectory)/source-\(key).json"
    }

    private func loadCache(for source: String) -> CacheFile {
        guard let path = cachePath(for: source), let bytes = try? Files.read(path, limit: 64 << 20),
              let json = try? JSON.parse(bytes), let cache = CacheFile(json: json) else { return CacheFile() }
        return cache
    }

    private func saveCache(_ cache: CacheFile, for source: String) throws {
        guard updatesCache, let cacheDirectory, let path = cachePath(for: source) else { return }
        try Files.createDirectory(cacheDirectory, mode: 0o700)
        try Files.writeAtomically(path, Array(cache.json.serialized().utf8))
    }
}
