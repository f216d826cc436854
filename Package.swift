// swift-tools-version: 6.2
//
// tupp — a declarative, manifest-driven Linux container provisioner.
//
// Module map (see README.md, "How it works"). Pure modules import no C and need no root:
//   TuppBase           pure: hashing, JSON, units, path strings
//   TuppManifest       pure: the manifest model (what the user declares)
//   TuppFacts          pure: what observation returns (links, subvolumes, processes)
//   TuppPlan           pure: each kind's attributes and judgement (Kinds/), the planner
//   TuppRender         pure: plans as text, JSON and markdown
//   TuppManifestLoader manifests read with libyaml, decoded and validated
//   TuppEngine         observe → plan → apply through one reconciler per kind, lock, records
//   TuppStorage        btrfs pool, image import, snapshots (libbtrfsutil, libarchive)
//   TuppNetworking     bridge, veth, addresses, routes (libnl-route-3), NAT
//   TuppRuntime        the container process: spawn, supervise, exec, logs (drives tupp-shim)
//   TuppSystem         small Swift wrappers over syscalls shared by the I/O modules
//   tupp               the command line (thin: flags → TuppEngine)
//   tupp-shim          single-threaded C helper: namespaces, rootfs, pivot_root, supervision
//   CTuppSys           the few syscalls Swift cannot call directly (openat2, ioctls, setns…)
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    // A module sees only the members of modules it imports itself: dependencies stay visible.
    .enableUpcomingFeature("MemberImportVisibility"),
]

// How the Swift executables link. lld: gold prints a linker warning for glibc's mktemp,
// referenced (never called) by the statically linked FoundationEssentials in release builds.
// --no-export-dynamic: -static-stdlib exports every Swift symbol (10,000 of them) for
// plug-ins tupp never loads, and the dynamic loader pays for that table on every start.
let executableLinking: [LinkerSetting] = [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic"])]

let package = Package(
    name: "tupp",
    products: [
        .executable(name: "tupp", targets: ["tupp"]),
        .executable(name: "tupp-shim", targets: ["tupp-shim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Without its Foundation trait: tupp links FoundationEssentials only (smaller, faster start).
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2", traits: []),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // System libraries, found through pkg-config.
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CBtrfsUtil", pkgConfig: "libbtrfsutil", providers: [.apt(["libbtrfsutil-dev"])]),
        .systemLibrary(name: "CNLRoute", pkgConfig: "libnl-route-3.0", providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),

        // C where Swift must not or cannot go.
        .target(name: "CTuppSys"),
        // libarchive (libarchive-dev's headers), loaded on first use rather than linked.
        .target(name: "CArchive", cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror"])]),
        // libnftables (libnftables-dev's header), loaded on first use rather than linked.
        .target(name: "CNFTables", cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror"])]),
        // libcurl (libcurl4-openssl-dev's headers), loaded on first use rather than linked.
        .target(name: "CCurl", cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror"])]),
        .executableTarget(
            name: "tupp-shim",
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror"])],
            // A small static binary: it stays resident once per container. libseccomp
            // (libseccomp-dev's libseccomp.a) builds the containers' seccomp filters.
            linkerSettings: [.linkedLibrary("seccomp"),
                             .unsafeFlags(["-static-stdlib", "-Xclang-linker", "-static", "-Xclang-linker", "-Wno-unused-command-line-argument"])]
        ),

        // Pure Swift modules: no C, no I/O.
        .target(name: "TuppBase", swiftSettings: strict),
        .target(name: "TuppManifest", dependencies: ["TuppBase"], swiftSettings: strict),
        .target(name: "TuppFacts", dependencies: ["TuppBase", "TuppManifest"], swiftSettings: strict),
        .target(name: "TuppPlan", dependencies: ["TuppBase", "TuppManifest", "TuppFacts"], swiftSettings: strict),
        .target(name: "TuppRender", dependencies: ["TuppBase", "TuppPlan"], swiftSettings: strict),

        // Swift modules that touch the host.
        .target(name: "TuppManifestLoader", dependencies: ["CYAML", "TuppBase", "TuppManifest"], swiftSettings: strict),
        .target(name: "TuppSystem", dependencies: ["CTuppSys", "TuppBase"], swiftSettings: strict),
        // OCI distribution (client side) and the image-spec values both image sources share.
        .target(name: "TuppRegistry", dependencies: ["TuppBase", "TuppSystem", "CCurl", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: strict),
        .target(
            name: "TuppStorage",
            dependencies: [
                "TuppBase", "TuppSystem", "TuppManifest", "TuppFacts", "TuppRegistry", "CTuppSys", "CBtrfsUtil", "CArchive",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strict
        ),
        .target(name: "TuppNetworking", dependencies: ["TuppBase", "TuppSystem", "TuppManifest", "TuppFacts", "CTuppSys", "CNLRoute", "CNFTables"],
                swiftSettings: strict),
        // The default seccomp profile is data (Docker's JSON format), compiled into the module.
        .target(name: "TuppRuntime", dependencies: ["TuppBase", "TuppSystem", "TuppManifest", "TuppFacts", "CTuppSys"],
                resources: [.embedInCode("Profiles/seccomp-default.json")], swiftSettings: strict),
        .target(
            name: "TuppEngine",
            dependencies: [
                "TuppBase", "TuppManifest", "TuppManifestLoader", "TuppFacts", "TuppPlan", "TuppSystem",
                "TuppStorage", "TuppNetworking", "TuppRuntime",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tupp",
            dependencies: [
                "TuppBase", "TuppEngine", "TuppManifest", "TuppManifestLoader", "TuppPlan", "TuppRender", "TuppRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict,
            linkerSettings: executableLinking
        ),

        // bench/run's driver for library-level measurements; no test depends on it.
        .executableTarget(
            name: "tupp-bench",
            dependencies: [
                "TuppBase", "TuppFacts", "TuppRuntime", "TuppStorage", "TuppRegistry", "TuppNetworking", "TuppManifest", "TuppSystem",
                "CTuppSys", "TuppTestTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict,
            linkerSettings: executableLinking
        ),

        // Tests. Unit tiers need no root; the others make real pools, links and processes.
        // Running commands and probes (no Swift Testing: tupp-bench links it too).
        .target(name: "TuppTestTools", dependencies: ["TuppBase", "TuppSystem", "CTuppSys"],
                path: "Tests/TuppTestTools", swiftSettings: strict),
        // Gates, the leak inventory and test installations (Swift Testing).
        .target(name: "TuppTestSupport", dependencies: ["TuppBase", "TuppFacts", "TuppManifest", "TuppSystem", "TuppNetworking", "CTuppSys",
                                                        "TuppManifestLoader", "TuppTestTools"],
                path: "Tests/TuppTestSupport", swiftSettings: strict),
        .testTarget(name: "TuppManifestTests", dependencies: ["TuppBase", "TuppManifest", "TuppManifestLoader", "TuppSystem", "TuppTestSupport"],
                    exclude: ["Invalid"], swiftSettings: strict),
        .testTarget(name: "TuppPlanTests", dependencies: ["TuppBase", "TuppPlan", "TuppRender", "TuppFacts", "TuppManifest",
                                                         .product(name: "PropertyBased", package: "swift-property-based")],
                    swiftSettings: strict),
        .testTarget(name: "TuppEngineTests", dependencies: ["TuppBase", "TuppEngine", "TuppPlan", "TuppFacts", "TuppManifest",
                                                           "TuppNetworking", "TuppRuntime", "TuppSystem", "TuppTestSupport",
                                                           .product(name: "Logging", package: "swift-log")],
                    swiftSettings: strict),
        .testTarget(name: "TuppStorageTests", dependencies: ["TuppBase", "TuppFacts", "TuppStorage", "TuppRegistry", "TuppManifest", "TuppSystem", "TuppTestSupport", "TuppRuntime", "tupp-shim"],
                    swiftSettings: strict),
        .testTarget(name: "TuppRegistryTests", dependencies: ["TuppBase", "TuppRegistry", "TuppSystem", "TuppTestSupport"], swiftSettings: strict),
        .testTarget(name: "TuppNetworkingTests", dependencies: ["TuppBase", "TuppFacts", "TuppNetworking", "TuppManifest", "TuppSystem", "TuppTestSupport"],
                    swiftSettings: strict),
        .testTarget(name: "TuppRuntimeTests", dependencies: ["TuppBase", "TuppFacts", "TuppRuntime", "TuppManifest", "TuppSystem", "TuppTestSupport", "tupp-shim"],
                    swiftSettings: strict),
        .testTarget(name: "TuppEndToEndTests", dependencies: ["TuppBase", "TuppFacts", "TuppManifest", "TuppSystem", "TuppTestSupport", "TuppNetworking", "tupp", "tupp-shim"],
                    swiftSettings: strict),
        // contrib/: the Ansible collection, tupp-sync and its units, driven as users run them.
        .testTarget(name: "TuppFleetTests", dependencies: ["TuppBase", "TuppFacts", "TuppTestSupport", "TuppPlan", "TuppSystem", "tupp", "tupp-shim"],
                    swiftSettings: strict),
    ]
)
