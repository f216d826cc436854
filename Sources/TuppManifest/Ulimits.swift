/// One resource limit of `ulimits:` (setrlimit(2)), applied to the container's processes.
public struct Ulimit: Sendable, Equatable, CustomStringConvertible {
    /// The limits setrlimit knows, by the names of `ulimit` and Docker's --ulimit.
    public enum Name: String, CaseIterable, Sendable {
        case cpu, fsize, data, stack, core, rss, nproc, nofile, memlock, `as`, locks, sigpending, msgqueue, nice, rtprio, rttime

        /// RLIMIT_* (asm-generic/resource.h; the same on every architecture tupp builds for).
        public var resource: Int32 {
            switch self {
            case .cpu: 0
            case .fsize: 1
            case .data: 2
            case .stack: 3
            case .core: 4
            case .rss: 5
            case .nproc: 6
            case .nofile: 7
            case .memlock: 8
            case .as: 9
            case .locks: 10
            case .sigpending: 11
            case .msgqueue: 12
            case .nice: 13
            case .rtprio: 14
            case .rttime: 15
            }
        }
    }

    public var name: Name
    /// nil: unlimited.
    public var soft: UInt64?
    public var hard: UInt64?

    public init(_ name: Name, soft: UInt64?, hard: UInt64?) {
        self.name = name
        self.soft = soft
        self.hard = hard
    }

    /// Soft and hard limit the same (`nofile: 65536`).
    public init(_ name: Name, _ both: UInt64?) { self.init(name, soft: both, hard: both) }

    public var description: String {
        "\(name.rawValue)=\(soft.map(String.init) ?? "unlimited"):\(hard.map(String.init) ?? "unlimited")"
    }

    /// The limits a container starts with, whoever runs tupp: the kernel's own for the
    /// first process (include/asm-generic/resource.h INIT_RLIMITS, as PID 1 of the host
    /// gets them), except nofile 1024:524288, the default of systemd and containerd today
    /// (1024 soft keeps select(2) safe, 524288 hard lets a program raise it itself).
    /// nproc and sigpending are what the kernel gives PID 1 at boot: threads-max / 2.
    public static func defaults(threadsMax: UInt64) -> [Ulimit] {
        let eightMiB: UInt64 = 8 << 20
        return [
            Ulimit(.cpu, nil), Ulimit(.fsize, nil), Ulimit(.data, nil),
            Ulimit(.stack, soft: eightMiB, hard: nil),
            Ulimit(.core, soft: 0, hard: nil),
            Ulimit(.rss, nil),
            Ulimit(.nproc, threadsMax / 2),
            Ulimit(.nofile, soft: 1024, hard: 524_288),
            Ulimit(.memlock, eightMiB),
            Ulimit(.as, nil), Ulimit(.locks, nil),
            Ulimit(.sigpending, threadsMax / 2),
            Ulimit(.msgqueue, 819_200),
            Ulimit(.nice, 0), Ulimit(.rtprio, 0),
            Ulimit(.rttime, nil),
        ]
    }

    /// Every limit the container gets: the defaults with `declared` in their place.
    public static func effective(_ declared: [Ulimit], threadsMax: UInt64) -> [Ulimit] {
        defaults(threadsMax: threadsMax).map { base in declared.last { $0.name == base.name } ?? base }
    }
}
