/// One layer of an image being pulled or imported from an OCI layout (several arrive at
/// once while layers download in parallel): what the layer store reports and apply shows.
public struct LayerProgress: Sendable, Equatable {
    public enum Phase: String, Sendable {
        /// Already in the layer store: nothing to fetch or unpack.
        case present
        case downloading
        case unpacking
        case done
    }

    /// 0-based from the bottom layer.
    public var index: Int
    public var count: Int
    /// The layer blob's digest, as registries and `docker pull` name layers.
    public var digest: String
    public var phase: Phase
    /// Blob bytes downloaded (or, once unpacked, the blob's size).
    public var bytes: UInt64
    public var total: UInt64
    public var bytesPerSecond: Double

    public init(index: Int, count: Int, digest: String, phase: Phase, bytes: UInt64, total: UInt64, bytesPerSecond: Double) {
        self.index = index
        self.count = count
        self.digest = digest
        self.phase = phase
        self.bytes = bytes
        self.total = total
        self.bytesPerSecond = bytesPerSecond
    }
}
