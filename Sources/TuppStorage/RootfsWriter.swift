import CTuppSys
import Glibc
import TuppSystem

/// One filesystem object to create inside a rootfs, whatever it came from (a tar entry,
/// a file in a source directory, a generated busybox file).
struct EntryHeader {
    enum Kind: Equatable {
        case regular
        case directory
        case symlink(target: String)
        /// `target` is a rootfs-relative path, already validated.
        case hardlink(target: String)
        case fifo
        /// Character or block device: never created, skipped with a warning.
        case device(character: Bool, major: UInt32, minor: UInt32)
        case socket
    }

    /// Normalized rootfs-relative path ("etc/passwd"); "" is the root directory itself.
    var path: String
    var kind: Kind
    /// Permission bits including setuid/setgid/sticky.
    var permissions: mode_t
    var uid: uid_t
    var gid: gid_t
    var accessTime: timespec?
    var modificationTime: timespec?
    var xattrs: [(name: String, value: [UInt8])] = []
    /// Apparent size of a regular file (sparse files may write less).
    var size: Int64 = 0
}

/// Why an entry path is refused. Checked before anything touches the filesystem.
enum PathProblem: Error, Equatable, CustomStringConvertible {
    case empty
    case absolute
    case parentReference
    case notUTF8

    var description: String {
        switch self {
        case .empty: return "empty path"
        case .absolute: return "absolute path"
        case .parentReference: return "path has a '..' component"
        case .notUTF8: return "path is not valid UTF-8"
        }
    }
}

enum RootfsPath {
    /// "./a//b/" → "a/b"; refuses absolute paths and any ".." component (a benign-looking
    /// "a/../b" is refused too: legitimate archives never need it).
    static func normalize(_ raw: String) -> Result<String, PathProblem> {
        if raw.isEmpty { return .failure(.empty) }
        if raw.utf8.first == UInt8(ascii: "/") { return .failure(.absolute) }
        var parts: [Substring] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { return .failure(.parentReference) }
            parts.append(part)
        }
        return .success(parts.joined(separator: "/"))
    }

    /// ("a/b", "c") for "a/b/c"; ("", "c") for "c".
    static func split(_ path: String) -> (parent: String, name: String) {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }
}

/// Writes filesystem objects into a rootfs without ever leaving it.
///
/// Every parent directory is resolved with openat2(RESOLVE_IN_ROOT): a symlink among
/// the parents — relative, absolute or chained — is followed as if the rootfs were `/`,
/// so it can point only inside. The final component is created with *at() calls
/// relative to that parent and is never followed: an existing entry there is replaced
/// (tar semantics), a symlink included. The last resolved parent is cached, since
/// archives list a directory's entries together.
///
/// In layer mode (OCI), whiteouts are applied: `.wh.NAME` removes NAME and
/// `.wh..wh..opq` empties its directory — but only of what lower layers put there; what
/// this layer created is tracked by (directory inode, name) and kept.
final class RootfsWriter {
    let root: FileDescriptor
    /// Names the source in errors: the archive path, or "ARCHIVE (layer sha256:…)".
    var sourceName: String
    private(set) var warnings: [String] = []
    private(set) var entriesWritten = 0

    /// Whiteouts are interpreted only for OCI layers; a plain rootfs tarball is literal.
    /// A layer lands on lower layers, whose directories this writer did not make.
    var layerMode = false {
        didSet { if layerMode { creation = nil } }
    }

    /// The owner and mode a new entry gets by itself, while they can be trusted: in a root
    /// that was empty, not setgid and without default ACL when the writer started, until
    /// an entry makes a setgid directory or writes a default ACL. nil: set them every time.
    private var creation: CreationDefaults?

    /// A resolved parent directory; `inode` is filled in layer mode only.
    private struct Parent { var fd: FileDescriptor; var inode: UInt64 }
    private var cachedParent: (path: String, parent: Parent)?
    private var directoryTimes: [(path: String, times: (timespec, timespec))] = []
    private var skippedTrustedXattrs = 0

    // Layer bookkeeping (reset per layer).
    private struct EntryKey: Hashable { var directory: UInt64; var name: String }
    private var upperEntries: Set<EntryKey> = []
    private var upperDirectories: Set<UInt64> = []
    private var recordedDirectoryPaths: Set<String> = []

    init(root: FileDescriptor, sourceName: String) {
        self.root = root
        self.sourceName = sourceName
        creation = Self.isEmptyPlainDirectory(root.rawValue) ? .current() : nil
    }

    /// An empty directory on btrfs that is not setgid and has no default ACL: what is
    /// created in it gets the creator's owner and `mode & ~umask`. btrfs, because other
    /// filesystems may differ (ext4's and XFS's `grpid` give a new entry its parent's group).
    /// Anything unclear answers false.
    private static func isEmptyPlainDirectory(_ fd: Int32) -> Bool {
        var fs = statfs()
        guard fstatfs(fd, &fs) == 0, UInt64(UInt(bitPattern: fs.f_type)) == UInt64(TUPP_BTRFS_SUPER_MAGIC) else { return false }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_mode & S_ISGID == 0 else { return false }
        if fgetxattr(fd, "system.posix_acl_default", nil, 0) >= 0 || errno != ENODATA { return false }
        return (try? Files.entryNames(ofDirectory: fd, describedAs: "rootfs"))?.isEmpty == true
    }

    /// Stops trusting creation defaults before an entry that changes them for what follows.
    private func noteCreationEffects(_ header: EntryHeader) {
        guard creation != nil else { return }
        if (header.kind == .directory && header.permissions & S_ISGID != 0)
            || header.xattrs.contains(where: { $0.name == "system.posix_acl_default" }) {
            creation = nil
        }
    }

    // MARK: - Errors

    func failure(_ operation: String, _ entry: String, errno code: Int32 = Glibc.errno, _ detail: String? = nil) -> SystemError {
        SystemError(operation, object(entry), errno: code, detail: detail)
    }

    func refusal(_ entry: String, _ reason: String) -> SystemError {
        SystemError.failure("refuse entry", object(entry), reason)
    }

    /// How errors name an entry: "SOURCE: path/in/archive" ("." for the root).
    private func object(_ entry: String) -> String { "\(sourceName): \(entry.isEmpty ? "." : entry)" }

    func warn(_ text: String) { warnings.append(text) }

    // MARK: - Layers

    /// Starts a new layer: what it creates is "upper" until the next one.
    func beginLayer(name: String) {
        sourceName = name
        upperEntries.removeAll(keepingCapacity: true)
        upperDirectories.removeAll(keepingCapacity: true)
        recordedDirectoryPaths.removeAll(keepingCapacity: true)
        invalidateParentCache()
    }

    /// Applies directory times recorded during extraction (after their contents were
    /// written, which would otherwise have moved them). Setting a directory's times does
    /// not touch its parent's, so the order is free: grouped by parent, each parent is
    /// resolved once; within a parent the archive's order is kept (the last entry wins).
    func finish() throws(SystemError) {
        let byParent = directoryTimes.enumerated().map { (index, entry) in (RootfsPath.split(entry.path), entry.times, index) }
            .sorted { ($0.0.parent, $0.2) < ($1.0.parent, $1.2) }
        var resolved: (path: String, fd: FileDescriptor?)?
        for ((parentPath, name), times, _) in byParent {
            var pair = [times.0, times.1]
            if name.isEmpty {
                if futimens(root.rawValue, &pair) != 0 { throw failure("set times", "") }
                continue
            }
            if resolved?.path != parentPath { resolved = (parentPath, try openExistingDirectory(parentPath)) }
            guard let parent = resolved?.fd else { continue }
            if utimensat(parent.rawValue, name, &pair, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT {
                throw failure("set times", parentPath.isEmpty ? name : parentPath + "/" + name)
            }
        }
        directoryTimes.removeAll()
        if skippedTrustedXattrs > 0 {
            warn("skipped \(skippedTrustedXattrs) trusted.* extended attribute(s): they belong to the host, not to an image")
            skippedTrustedXattrs = 0
        }
        invalidateParentCache()
    }

    // MARK: - Entries

    /// Creates `header` in the rootfs. `writeContent` fills a regular file through the
    /// given descriptor (it is not called for other kinds).
    func apply(_ header: EntryHeader, writeContent: (Int32) throws -> Void) throws {
        entriesWritten += 1
        noteCreationEffects(header)
        if header.path.isEmpty {
            guard header.kind == .directory else {
                throw refusal(header.path, "an entry may not replace the root directory with a non-directory")
            }
            try applyDirectoryMetadata(root.rawValue, header)
            record(directoryTimesOf: header)
            return
        }
        let (parentPath, name) = RootfsPath.split(header.path)
        if layerMode, try applyWhiteout(header, parentPath: parentPath, name: name) { return }

        if case .device(let character, let major, let minor) = header.kind {
            warn("skipped \(character ? "character" : "block") device \(header.path) (\(major):\(minor)) in \(sourceName): the runtime provides /dev")
            return
        }
        if header.kind == .socket {
            warn("skipped socket \(header.path) in \(sourceName)")
            return
        }
        let resolved = try parentDirectory(parentPath, entry: header.path)
        let parent = resolved.fd.rawValue
        defer { withExtendedLifetime(resolved) {} }

        switch header.kind {
        case .regular:
            try writeRegular(header, parent: parent, name: name, writeContent: writeContent)
        case .directory:
            try makeDirectory(header, parent: parent, name: name)
        case .symlink(let target):
            try create(header.path, parent: parent, name: name) { symlinkat(target, parent, name) }
            try applyLinkMetadata(header, parent: parent, name: name)
        case .hardlink(let target):
            try makeHardlink(header, target: target, parent: parent, name: name)
        case .fifo:
            try create(header.path, parent: parent, name: name) { mknodat(parent, name, S_IFIFO | 0o600, 0) }
            try applyLinkMetadata(header, parent: parent, name: name)
            if fchmodat(parent, name, header.permissions, 0) != 0 { throw failure("set mode", header.path) }
        case .device, .socket:
            break
        }
        if layerMode { upperEntries.insert(EntryKey(directory: resolved.inode, name: name)) }
    }

    private func writeRegular(_ header: EntryHeader, parent: Int32, name: String,
                              writeContent: (Int32) throws -> Void) throws {
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        // Created with its final mode when that is what creation gives (see CreationDefaults);
        // otherwise private until chmod.
        let finalMode = header.xattrs.isEmpty ? creation?.creationMode(for: header.permissions) : nil
        var raw = openat(parent, name, flags, finalMode ?? 0o600)
        if raw < 0 && errno == EEXIST {
            try removeExisting(parent: parent, name: name, entry: header.path)
            raw = openat(parent, name, flags, finalMode ?? 0o600)
        }
        if raw < 0 { throw failure("create file", header.path) }
        let file = FileDescriptor(adopting: raw)
        try writeContent(raw)
        // Owner before mode (chown clears setuid/setgid) and before xattrs (chown drops
        // security.capability); data before xattrs (a write drops it too).
        if !ownerIsSet(header), fchown(raw, header.uid, header.gid) != 0 { throw failure("set owner", header.path) }
        try setXattrs(header) { fsetxattr(raw, $0, $1, $2, 0) }
        if finalMode == nil, fchmod(raw, header.permissions) != 0 { throw failure("set mode", header.path) }
        if var times = timePair(header) {
            if futimens(raw, &times) != 0 { throw failure("set times", header.path) }
        }
        withExtendedLifetime(file) {}
    }

    /// Whether a new entry already has the header's owner (see CreationDefaults).
    private func ownerIsSet(_ header: EntryHeader) -> Bool {
        creation?.ownerIsSet(uid: header.uid, gid: header.gid) ?? false
    }

    private func makeDirectory(_ header: EntryHeader, parent: Int32, name: String) throws {
        // A new directory that creation alone makes right is not opened at all.
        if !layerMode, header.xattrs.isEmpty, ownerIsSet(header),
           let mode = creation?.creationMode(for: header.permissions), mkdirat(parent, name, mode) == 0 {
            record(directoryTimesOf: header)
            return
        }
        if mkdirat(parent, name, 0o700) != 0 {
            guard errno == EEXIST else { throw failure("create directory", header.path) }
            var st = stat()
            if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 { throw failure("stat", header.path) }
            if (st.st_mode & S_IFMT) != S_IFDIR {
                try removeExisting(parent: parent, name: name, entry: header.path)
                if mkdirat(parent, name, 0o700) != 0 { throw failure("create directory", header.path) }
            }
        }
        let raw = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 { throw failure("open directory", header.path) }
        let directory = FileDescriptor(adopting: raw)
        try applyDirectoryMetadata(raw, header)
        if layerMode {
            var st = stat()
            if fstat(raw, &st) == 0 { upperDirectories.insert(UInt64(st.st_ino)) }
        }
        withExtendedLifetime(directory) {}
        record(directoryTimesOf: header)
    }

    private func applyDirectoryMetadata(_ fd: Int32, _ header: EntryHeader) throws {
        if fchown(fd, header.uid, header.gid) != 0 { throw failure("set owner", header.path) }
        try setXattrs(header) { fsetxattr(fd, $0, $1, $2, 0) }
        if fchmod(fd, header.permissions) != 0 { throw failure("set mode", header.path) }
    }

    private func record(directoryTimesOf header: EntryHeader) {
        if let times = timePair(header) { directoryTimes.append((header.path, (times[0], times[1]))) }
    }

    /// Owner, xattrs and times of an object that cannot be opened (symlink, FIFO).
    private func applyLinkMetadata(_ header: EntryHeader, parent: Int32, name: String) throws {
        if !ownerIsSet(header), fchownat(parent, name, header.uid, header.gid, AT_SYMLINK_NOFOLLOW) != 0 {
            throw failure("set owner", header.path)
        }
        if !header.xattrs.isEmpty {
            // l*xattr on /proc/self/fd/PARENT/NAME: the parent is our own descriptor and
            // the last component is not followed.
            let path = "/proc/self/fd/\(parent)/\(name)"
            try setXattrs(header) { lsetxattr(path, $0, $1, $2, 0) }
        }
        if var times = timePair(header) {
            if utimensat(parent, name, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw failure("set times", header.path) }
        }
    }

    private func makeHardlink(_ header: EntryHeader, target: String, parent: Int32, name: String) throws {
        let (targetParentPath, targetName) = RootfsPath.split(target)
        guard !targetName.isEmpty else { throw refusal(header.path, "hard link to the root directory") }
        guard let targetParent = try openExistingDirectory(targetParentPath) else {
            throw failure("create hard link", header.path, errno: ENOENT, "target \(target) does not exist")
        }
        var targetStat = stat()
        if fstatat(targetParent.rawValue, targetName, &targetStat, AT_SYMLINK_NOFOLLOW) != 0 {
            throw failure("create hard link", header.path, "target \(target)")
        }
        var existing = stat()
        if fstatat(parent, name, &existing, AT_SYMLINK_NOFOLLOW) == 0 {
            if existing.st_ino == targetStat.st_ino && existing.st_dev == targetStat.st_dev { return }
            try removeExisting(parent: parent, name: name, entry: header.path)
        }
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        if linkat(targetParent.rawValue, targetName, parent, name, 0) != 0 {
            throw failure("create hard link", header.path, "target \(target)")
        }
    }

    /// Runs `make`; when the name is taken, replaces what is there and runs it again.
    private func create(_ entry: String, parent: Int32, name: String, _ make: () -> Int32) throws {
        if make() == 0 { return }
        guard errno == EEXIST else { throw failure("create", entry) }
        try removeExisting(parent: parent, name: name, entry: entry)
        if make() != 0 { throw failure("create", entry) }
    }

    private func setXattrs(_ header: EntryHeader,
                           _ set: (String, UnsafeRawPointer, Int) -> Int32) throws {
        for (name, value) in header.xattrs {
            if name.hasPrefix("trusted.") {
                skippedTrustedXattrs += 1
                continue
            }
            let rc = value.withUnsafeBytes { buffer in
                set(name, buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, buffer.count)
            }
            if rc != 0 { throw failure("set extended attribute \(name)", header.path) }
        }
    }

    private func timePair(_ header: EntryHeader) -> [timespec]? {
        guard let modified = header.modificationTime else { return nil }
        return [header.accessTime ?? modified, modified]
    }

    // MARK: - Whiteouts

    /// Handles `header` if it is a whiteout; refuses malformed ones. True when handled.
    private func applyWhiteout(_ header: EntryHeader, parentPath: String, name: String) throws -> Bool {
        let prefix = ".wh."
        // A whiteout name can never be a directory on the path to something else.
        if parentPath.split(separator: "/").contains(where: { $0.hasPrefix(prefix) }) {
            throw refusal(header.path, "whiteout name used as a directory")
        }
        guard name.hasPrefix(prefix) else { return false }
        guard header.kind == .regular else {
            throw refusal(header.path, "whiteout must be an empty regular file")
        }
        if header.size != 0 { throw refusal(header.path, "whiteout must be empty (it carries \(header.size) bytes)") }
        if name == ".wh..wh..opq" {
            guard let located = try openExistingDirectory(parentPath) else { return true }
            // The resolved O_PATH descriptor cannot be listed; open the directory itself.
            let raw = openat(located.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if raw < 0 { throw failure("open directory", parentPath) }
            let directory = FileDescriptor(adopting: raw)
            let inode = try inodeOf(raw, entry: header.path)
            try removeLowerChildren(of: directory.rawValue, inode: inode, entry: header.path)
            invalidateParentCache()
            return true
        }
        if name.hasPrefix(".wh..wh.") { throw refusal(header.path, "unsupported whiteout meta entry") }
        let target = String(name.dropFirst(prefix.count))
        if target.isEmpty || target == "." || target == ".." {
            throw refusal(header.path, "whiteout names no entry ('\(target)')")
        }
        guard let directory = try openExistingDirectory(parentPath) else { return true }
        let inode = try inodeOf(directory.rawValue, entry: header.path)
        try removeLower(parent: directory.rawValue, parentInode: inode, name: target, entry: header.path)
        invalidateParentCache()
        return true
    }

    private func inodeOf(_ fd: Int32, entry: String) throws(SystemError) -> UInt64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw failure("stat", entry) }
        return UInt64(st.st_ino)
    }

    /// Removes `parent/name` unless this layer created it; inside a directory this
    /// layer touched, removes what it did not.
    private func removeLower(parent: Int32, parentInode: UInt64, name: String, entry: String) throws {
        var st = stat()
        if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return }
            throw failure("stat", entry)
        }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        let isUpper = upperEntries.contains(EntryKey(directory: parentInode, name: name))
            || (isDirectory && upperDirectories.contains(UInt64(st.st_ino)))
        if !isUpper {
            try removeTree(parent: parent, name: name, entry: entry)
            return
        }
        guard isDirectory else { return }
        let raw = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 { throw failure("open directory", entry) }
        let directory = FileDescriptor(adopting: raw)
        try removeLowerChildren(of: directory.rawValue, inode: UInt64(st.st_ino), entry: entry)
    }

    private func removeLowerChildren(of directory: Int32, inode: UInt64, entry: String) throws {
        for child in try listDirectory(directory, entry: entry) {
            try removeLower(parent: directory, parentInode: inode, name: child, entry: entry)
        }
    }

    // MARK: - Removal

    private func removeExisting(parent: Int32, name: String, entry: String) throws(SystemError) {
        try removeTree(parent: parent, name: name, entry: entry)
    }

    /// rm -r of `parent/name` through descriptors, never following a symlink.
    private func removeTree(parent: Int32, name: String, entry: String) throws(SystemError) {
        if unlinkat(parent, name, 0) == 0 { return }
        let code = errno
        if code == ENOENT { return }
        guard code == EISDIR || code == EPERM else { throw failure("remove", entry, errno: code) }
        let raw = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 { throw failure("open directory", entry) }
        let directory = FileDescriptor(adopting: raw)
        for child in try listDirectory(raw, entry: entry) {
            try removeTree(parent: directory.rawValue, name: child, entry: entry)
        }
        if unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT { throw failure("remove directory", entry) }
        // A cached parent may have lived below what was just removed.
        invalidateParentCache()
    }

    private func listDirectory(_ fd: Int32, entry: String) throws(SystemError) -> [String] {
        try Files.entryNames(ofDirectory: fd, describedAs: object(entry))
    }

    // MARK: - Parent resolution

    private func invalidateParentCache() {
        cachedParent = nil
    }

    private static let resolveFlags = UInt64(TUPP_RESOLVE_IN_ROOT | TUPP_RESOLVE_NO_MAGICLINKS)

    private func openInRoot(_ path: String) -> Int32 {
        tupp_openat2(root.rawValue, path, UInt64(TUPP_O_PATH | O_DIRECTORY | O_CLOEXEC), 0, Self.resolveFlags)
    }

    /// The directory `path` resolved inside the root, nil when it does not exist.
    func openExistingDirectory(_ path: String) throws(SystemError) -> FileDescriptor? {
        if path.isEmpty { return root }
        let raw = openInRoot(path)
        if raw >= 0 { return FileDescriptor(adopting: raw) }
        if errno == ENOENT { return nil }
        throw failure("resolve directory", path)
    }

    /// The parent directory for an entry, created (0755, like tar) when missing.
    private func parentDirectory(_ path: String, entry: String) throws -> Parent {
        if let cachedParent, cachedParent.path == path { return cachedParent.parent }
        let parent: Parent
        if path.isEmpty {
            parent = Parent(fd: root, inode: layerMode ? try inodeOf(root.rawValue, entry: entry) : 0)
        } else {
            var raw = openInRoot(path)
            if raw < 0 {
                let code = errno
                guard code == ENOENT else {
                    throw failure("resolve parent directory \(path)", entry, errno: code,
                                  code == ENOTDIR ? "a parent is not a directory" : nil)
                }
                try createParents(path, entry: entry)
                raw = openInRoot(path)
                if raw < 0 { throw failure("resolve parent directory \(path)", entry) }
            }
            parent = Parent(fd: FileDescriptor(adopting: raw), inode: layerMode ? try inodeOf(raw, entry: entry) : 0)
            if layerMode { try recordAncestors(path, inode: parent.inode, entry: entry) }
        }
        cachedParent = (path, parent)
        return parent
    }

    private func createParents(_ path: String, entry: String) throws {
        var prefix = ""
        var parent = root
        for component in path.split(separator: "/") {
            let name = String(component)
            prefix = prefix.isEmpty ? name : prefix + "/" + name
            var raw = openInRoot(prefix)
            if raw < 0 {
                guard errno == ENOENT else { throw failure("resolve parent directory \(prefix)", entry) }
                if mkdirat(parent.rawValue, name, 0o755) != 0 {
                    let code = errno
                    throw failure("create parent directory \(prefix)", entry, errno: code,
                                  code == EEXIST ? "it is a dangling symlink" : nil)
                }
                if fchmodat(parent.rawValue, name, 0o755, 0) != 0 { throw failure("set mode", prefix) }
                raw = openInRoot(prefix)
                if raw < 0 { throw failure("resolve parent directory \(prefix)", entry) }
            }
            parent = FileDescriptor(adopting: raw)
        }
    }

    /// Marks the directories on the way to an entry of this layer as upper, so an
    /// opaque whiteout of a grandparent keeps them (as umoci does).
    private func recordAncestors(_ path: String, inode: UInt64, entry: String) throws {
        var current = path
        var first = true
        while !current.isEmpty, !recordedDirectoryPaths.contains(current) {
            recordedDirectoryPaths.insert(current)
            if first {
                upperDirectories.insert(inode)
                first = false
            } else if let fd = try openExistingDirectory(current) {
                upperDirectories.insert(try inodeOf(fd.rawValue, entry: entry))
            }
            current = RootfsPath.split(current).parent
        }
    }
}
