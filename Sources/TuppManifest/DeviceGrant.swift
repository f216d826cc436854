/// `devices:` of a container: a host device made available inside, at the same path.
public struct DeviceGrant: Sendable, Equatable {
    /// Absolute path below /dev, on the host and in the container ("/dev/fuse").
    public var path: String
    /// Any of "r" (read), "w" (write), "m" (mknod), e.g. "rwm".
    public var permissions: String

    public init(path: String, permissions: String = "rwm") {
        self.path = path
        self.permissions = permissions
    }
}
