// swift-tools-version: 6.1
// ShadowMover — application-consistent, deduplicated, compressed backups of live Linux volumes.
// Module layout follows shared DESIGN.md §2: system shims → Chunking / Compression → ChunkStore →
// DataMover → ShadowMoverCLI → the `shadowmover` executable.
import PackageDescription

let package = Package(
    name: "ShadowMover",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "shadowmover", targets: ["shadowmover"]),
        .library(name: "Chunking", targets: ["Chunking"]),
        .library(name: "Compression", targets: ["Compression"]),
        .library(name: "ChunkStore", targets: ["ChunkStore"]),
        .library(name: "DataMover", targets: ["DataMover"]),
        .library(name: "SnapshotMount", targets: ["SnapshotMount"]),
        .library(name: "ObjectStorage", targets: ["ObjectStorage"]),
        .library(name: "ShadowCopy", targets: ["ShadowCopy"]),
        .library(name: "JobFormat", targets: ["JobFormat"]),
        .library(name: "Jobs", targets: ["Jobs"]),
        .library(name: "JSONFormat", targets: ["JSONFormat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libzstd-dev, liblz4-dev, zlib1g-dev).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Linux headers Glibc's module leaves out (xattrs, ioctls).
        .systemLibrary(name: "CLinux"),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // PostgreSQL's libpq: the PostgreSQL writer's events are synchronous calls on one held session,
        // which libpq does directly (postgres-nio would bring an event loop and minutes of build time).
        // Opened on first use (dlopen), not linked: see Sources/CLibPQ/include/CLibPQ.h.
        .target(name: "CLibPQ"),
        // libfuse 3 for `mount`, behind a small C shim (CFuse) that picks fuse's versioned API.
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CFuse", dependencies: ["CFuse3"]),

        // The one JSON configuration (sorted keys, nanosecond ISO 8601 dates) every module writes.
        .target(name: "JSONFormat"),
        // Files written whole or not at all: temp → fsync → rename → fsync directory.
        .target(name: "DurableFile"),
        // Child processes that cannot hang us: posix_spawn and waitpid, nothing inherited.
        .target(name: "ChildProcess", dependencies: ["CLinux"]),
        .target(name: "Chunking", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Compression", dependencies: ["CZstd", "CLZ4", "CZlib"]),
        // SHA-256 for blob ids, many messages in two SHA-NI lanes: see Sources/CSHA256/include/CSHA256.h.
        .target(name: "CSHA256"),
        .target(
            name: "ChunkStore",
            dependencies: [
                "Chunking", "Compression", "CZlib", "CSHA256", "ChildProcess", "JSONFormat", "DurableFile", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // The S3 backend: our own client (AWS Signature V4) on async-http-client.
        .target(
            name: "ObjectStorage",
            dependencies: [
                "ChunkStore", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "DataMover", dependencies: ["ChunkStore", "Chunking", "Compression", "CLinux", "CZlib", "DurableFile"]),
        // The read-only snapshot filesystem (`mount`).
        .target(name: "SnapshotMount", dependencies: ["CFuse", "DataMover", "ChunkStore"]),
        .target(name: "ShadowCopy", dependencies: ["CLinux", "CSQLite", "CLibPQ", "ChildProcess", "JSONFormat", "DurableFile"]),
        // Job files (TOML) and retention rules: parsers of untrusted input, kept apart from running jobs so
        // that they (and their fuzzer) build without the S3 client's network stack.
        .target(name: "JobFormat", dependencies: ["ShadowCopy", "ChunkStore", "Chunking", "Compression"]),
        .target(
            name: "Jobs",
            dependencies: ["JobFormat", "ShadowCopy", "DataMover", "ChunkStore", "ObjectStorage", "CSQLite", "ChildProcess", "JSONFormat", "DurableFile"]),
        .target(
            name: "ShadowMoverCLI",
            dependencies: [
                "Jobs", "JobFormat", "ShadowCopy", "DataMover", "SnapshotMount", "ChunkStore", "JSONFormat", "DurableFile", "ObjectStorage", "Chunking", "Compression", "ChildProcess",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(name: "shadowmover", dependencies: ["ShadowMoverCLI"]),

        .testTarget(name: "ChunkingTests", dependencies: ["Chunking"]),
        .testTarget(name: "CompressionTests", dependencies: ["Compression"]),
        .testTarget(
            name: "BackupTests",
            dependencies: [
                "ChunkStore", "ObjectStorage", "DataMover", "Compression", "Chunking", "ShadowCopy", "JobFormat", "Jobs", "shadowmover", "ChildProcess", "CSHA256",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
