import Crypto
import Glibc
import TuppSystem

/// How far one blob's download got; reported a few times a second and once at the end.
public struct TransferProgress: Sendable, Equatable {
    public var digest: String
    /// Bytes of the blob on disk so far, resumed bytes included.
    public var bytes: UInt64
    public var total: UInt64
    /// Bytes per second over this transfer (resumed bytes not counted).
    public var bytesPerSecond: Double
    public var finished: Bool
}

extension RegistryClient {
    /// Downloads a layer blob to `directory/<hex>` and returns that path. The bytes are
    /// hashed while they stream; only a blob whose size and sha256 match `descriptor`
    /// gets its final name (a mismatch is an error naming the blob and both digests,
    /// and the bad bytes are deleted).
    ///
    /// The download goes to `<hex>.partial` first, under an exclusive lock. A dropped
    /// connection or a 429/5xx is retried with backoff, asking only for the rest
    /// (`Range: bytes=N-`); a partial file left by an earlier run is hashed and resumed
    /// the same way. A server that ignores the range (200 instead of 206) gets the file
    /// started over.
    public func download(_ descriptor: Descriptor, into directory: String,
                         progress: ((TransferProgress) -> Void)? = nil,
                         isCancelled: (() -> Bool)? = nil) throws(SystemError) -> String {
        guard ImageReference.isDigest(descriptor.digest), descriptor.size >= 0 else {
            throw failure("download blob", "'\(descriptor.digest)' is not a sha256 digest")
        }
        let hex = Digest.encoded(descriptor.digest)
        let final = "\(directory)/\(hex)"
        let partial = "\(final).partial"
        if Files.exists(final) { return final }
        let what = "blob \(descriptor.digest)"
        let total = UInt64(descriptor.size)

        let file = try FileDescriptor.open(partial, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        // Two pulls that need the same blob take turns; the second finds it done.
        try Errno.check("lock", partial) { flock(file.rawValue, LOCK_EX) }
        if Files.exists(final) { return final }
        var hasher = SHA256()
        var written = try rehash(file, path: partial, into: &hasher)
        if written > total {
            try truncate(file, path: partial)
            hasher = SHA256()
            written = 0
        }
        let session = try HTTPSession(security: options.security)
        let started = Monotonic.nanoseconds()
        let resumedFrom = written
        var lastReport: UInt64 = 0
        func report(finished: Bool) {
            guard let progress else { return }
            let now = Monotonic.nanoseconds()
            guard finished || now - lastReport >= 100_000_000 else { return }
            lastReport = now
            let seconds = Double(now - started) / 1e9
            progress(TransferProgress(digest: descriptor.digest, bytes: written, total: total,
                                      bytesPerSecond: seconds > 0 ? Double(written - resumedFrom) / seconds : 0,
                                      finished: finished))
        }

        // Each attempt asks for what is still missing; `send` retries dropped
        // connections and 429/5xx, and an attempt that moved bytes resets its count.
        var progressed = false
        func resumeRequest(_ request: inout HTTPRequest) {
            request.rangeStart = written > 0 ? Int64(written) : nil
        }
        var endings = 0
        while written < total {
            var request = HTTPRequest(url: "\(baseURL)/\(reference.repository)/blobs/\(descriptor.digest)")
            resumeRequest(&request)
            var start = written
            let response = try send(request, on: session, what: what, restart: { next in
                resumeRequest(&next)
                start = written
                defer { progressed = false }
                return progressed
            }) { chunk, status in
                if isCancelled?() == true { throw failure("download \(what)", "cancelled") }
                guard !chunk.isEmpty else { return true }
                if written == start && start > 0 && status != 206 {
                    // The server ignored the range and sends the whole blob: start over.
                    try truncate(file, path: partial)
                    hasher = SHA256()
                    written = 0
                    start = 0
                }
                guard written + UInt64(chunk.count) <= total else {
                    throw failure("download \(what)", "the registry sent more than the \(total) bytes the manifest gives")
                }
                try writeAll(file, chunk, at: written, path: partial)
                hasher.update(bufferPointer: chunk)
                written += UInt64(chunk.count)
                progressed = true
                report(finished: false)
                return true
            }
            if response.status == 416 {
                // Nothing at our offset: the registry holds less than the manifest says.
                unlink(partial)
                throw failure("download \(what)", "truncated: the registry has no bytes past \(written) of the \(total) the manifest gives (416); the partial download was deleted")
            }
            try expectSuccess(response, what: what)
            if written < total {
                // The body ended early without a transport error (a proxy that closed
                // cleanly): resume like after a dropped connection, a bounded number of times.
                endings = progressed ? endings + 1 : endings + options.retry.attempts
                progressed = false
                guard endings < 4 * options.retry.attempts else {
                    throw failure("download \(what)", "the transfer kept ending early at \(written) of \(total) bytes")
                }
                RetryPolicy.sleep(options.retry.delay(afterFailure: 1))
            }
        }
        let digest = "sha256:" + Digest.hex(hasher.finalize())
        guard digest == descriptor.digest else {
            unlink(partial)
            throw failure("verify \(what)", "digest mismatch: expected \(descriptor.digest), downloaded content is \(digest); the partial download was deleted")
        }
        try Errno.check("sync", partial) { fsync(file.rawValue) }
        try Errno.check("rename downloaded blob", "\(partial) → \(final)") { rename(partial, final) }
        report(finished: true)
        return final
    }

    /// Feeds the bytes already in a partial file into `hasher`; returns their count.
    private func rehash(_ file: FileDescriptor, path: String, into hasher: inout SHA256) throws(SystemError) -> UInt64 {
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let n = try Errno.check("read", path) { pread(file.rawValue, buffer, size, off_t(total)) }
            if n == 0 { return total }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
            total += UInt64(n)
        }
    }
}

private func truncate(_ file: FileDescriptor, path: String) throws(SystemError) {
    try Errno.check("truncate", path) { ftruncate(file.rawValue, 0) }
}

private func writeAll(_ file: FileDescriptor, _ chunk: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws(SystemError) {
    var done = 0
    while done < chunk.count {
        let n = try Errno.check("write", path) {
            pwrite(file.rawValue, chunk.baseAddress! + done, chunk.count - done, off_t(offset) + off_t(done))
        }
        done += n
    }
}
