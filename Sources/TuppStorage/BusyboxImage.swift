import Glibc
import Subprocess
import SystemPackage
import TuppSystem

/// The offline default image: a static busybox, one symlink per applet, a minimal
/// /etc and the empty mount points a container needs.
struct BusyboxImage {
    let binary: String

    /// Fills `writer` and returns the binary's sha256, hashed from the bytes copied.
    func build(into writer: RootfsWriter, meter: ProgressMeter) async throws -> String {
        let source = try FileDescriptor.open(binary, O_RDONLY)
        var st = stat()
        try Errno.check("stat", binary) { fstat(source.rawValue, &st) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SystemError.failure("use busybox", binary, "not a regular file")
        }
        let applets = try await listApplets()
        // Every file gets the binary's mtime: the same binary gives the same image.
        let time = st.st_mtim

        func entry(_ path: String, _ kind: EntryHeader.Kind, _ mode: mode_t) -> EntryHeader {
            EntryHeader(path: path, kind: kind, permissions: mode, uid: 0, gid: 0,
                        accessTime: time, modificationTime: time)
        }
        try writer.apply(entry("", .directory, 0o755)) { _ in }
        for directory in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "var"] {
            try writer.apply(entry(directory, .directory, 0o755)) { _ in }
        }
        try writer.apply(entry("tmp", .directory, 0o1777)) { _ in }
        try writer.apply(entry("root", .directory, 0o700)) { _ in }

        var binaryEntry = entry("bin/busybox", .regular, 0o755)
        binaryEntry.size = Int64(st.st_size)
        try writer.apply(binaryEntry) { out in
            try DirectoryCopier.copyContent(from: source.rawValue, to: out, size: Int64(st.st_size), path: binary)
        }
        for applet in applets where applet != "bin/busybox" {
            try writer.apply(entry(applet, .symlink(target: "/bin/busybox"), 0o777)) { _ in }
        }
        let files: [(String, String)] = [
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
            ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
            ("etc/hostname", "tupp\n"),
        ]
        for (path, text) in files {
            var file = entry(path, .regular, 0o644)
            file.size = Int64(text.utf8.count)
            try writer.apply(file) { out in
                try FileDescriptor(adopting: dup(out)).writeAll(Array(text.utf8), describedAs: path)
            }
        }
        try writer.finish()
        meter.update(bytes: UInt64(st.st_size), entries: writer.entriesWritten)
        lseek(source.rawValue, 0, SEEK_SET)
        return try SourceIdentity.hash(source, path: binary)
    }

    /// `busybox --list-full`: "bin/ls", "sbin/ifconfig", … normalized and validated like
    /// archive paths (the binary's own output is not trusted to stay inside the root).
    private func listApplets() async throws -> [String] {
        let result = try await run(.path(FilePath(binary)), arguments: ["--list-full"],
                                   output: .string(limit: 1 << 20), error: .discarded)
        let output = result.standardOutput
        guard result.terminationStatus.isSuccess else {
            throw SystemError.failure("list busybox applets", binary, "\(binary) --list-full failed: \(result.terminationStatus)")
        }
        var applets: [String] = []
        for line in output.split(separator: "\n") {
            let text = String(line).trimmingCharacters()
            if text.isEmpty { continue }
            guard case .success(let path) = RootfsPath.normalize(text), !path.isEmpty else {
                throw SystemError.failure("list busybox applets", binary, "unusable applet path '\(text)'")
            }
            applets.append(path)
        }
        guard !applets.isEmpty else {
            throw SystemError.failure("list busybox applets", binary, "no applets listed; is this busybox?")
        }
        return applets
    }
}
