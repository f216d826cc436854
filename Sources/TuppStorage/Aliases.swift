import TuppSystem

/// SystemPackage (needed for swift-subprocess's FilePath) has its own FileDescriptor;
/// in this module the name means TuppSystem's owned descriptor.
typealias FileDescriptor = TuppSystem.FileDescriptor
