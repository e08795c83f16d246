// swift-tools-version: 6.1
// Benchmarks of ShadowMover's stages and pipeline (ordo-one `benchmark`). A package of its own, so the
// main build and CI do not compile the benchmark tooling:
//
//   cd Benchmarks && swift package benchmark            (release build; prints MB/s per stage)
import PackageDescription

let package = Package(
    name: "ShadowMoverBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "ShadowMover", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Stages",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Chunking", package: "ShadowMover"),
                .product(name: "Compression", package: "ShadowMover"),
                .product(name: "ChunkStore", package: "ShadowMover"),
                .product(name: "DataMover", package: "ShadowMover"),
            ],
            path: "Benchmarks/Stages",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v6]
)
