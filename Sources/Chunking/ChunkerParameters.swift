/// Size limits and normalization level of the FastCDC chunker.
///
/// The limits are those of the reference implementation (fastcdc-rs v2020), so every accepted
/// setting has a reference cut-point sequence to compare against.
public struct ChunkerParameters: Sendable, Codable, Equatable, CustomStringConvertible {
    /// No chunk is smaller (except a file's last).
    public var minSize: Int
    /// The size chunks average.
    public var averageSize: Int
    /// No chunk is larger.
    public var maxSize: Int
    /// Normalized chunking level 0–3: higher levels pull chunk sizes closer to `averageSize`.
    public var normalization: Int

    /// DESIGN.md §4 defaults: min 256 KiB, average 1 MiB, max 4 MiB, level 2. Large chunks keep the
    /// index small (tens of bytes per MiB stored) while still deduplicating shifted data.
    public static let `default` = ChunkerParameters(
        minSize: 256 << 10, averageSize: 1 << 20, maxSize: 4 << 20, normalization: 2)

    /// Allowed minimum sizes.
    public static let minimumRange = 64...1_048_576
    /// Allowed average sizes.
    public static let averageRange = 256...4_194_304
    /// Allowed maximum sizes.
    public static let maximumRange = 1024...16_777_216

    /// Parameters as given (check them with `validate`).
    public init(minSize: Int, averageSize: Int, maxSize: Int, normalization: Int) {
        self.minSize = minSize
        self.averageSize = averageSize
        self.maxSize = maxSize
        self.normalization = normalization
    }

    /// Checks the parameters, with an error a user can act on.
    public func validate() throws {
        guard Self.minimumRange.contains(minSize) else {
            throw ChunkerParameterError.outOfRange("min", minSize, Self.minimumRange)
        }
        guard Self.averageRange.contains(averageSize) else {
            throw ChunkerParameterError.outOfRange("avg", averageSize, Self.averageRange)
        }
        guard Self.maximumRange.contains(maxSize) else {
            throw ChunkerParameterError.outOfRange("max", maxSize, Self.maximumRange)
        }
        guard minSize <= averageSize, averageSize <= maxSize else { throw ChunkerParameterError.notOrdered(self) }
        guard (0...3).contains(normalization) else { throw ChunkerParameterError.badLevel(normalization) }
    }

    /// "min/avg/max, level N".
    public var description: String {
        "min \(minSize), avg \(averageSize), max \(maxSize), level \(normalization)"
    }
}

/// Parameters a chunker cannot work with, each naming the setting.
public enum ChunkerParameterError: Error, CustomStringConvertible, Equatable {
    case outOfRange(String, Int, ClosedRange<Int>)
    case notOrdered(ChunkerParameters)
    case badLevel(Int)

    /// The setting, its value and what it may be.
    public var description: String {
        switch self {
        case .outOfRange(let name, let value, let range):
            "chunker \(name) size \(value) is out of range: choose a value in \(range.lowerBound)…\(range.upperBound)"
        case .notOrdered(let p):
            "chunker sizes must satisfy min ≤ avg ≤ max (got \(p.minSize), \(p.averageSize), \(p.maxSize))"
        case .badLevel(let level):
            "normalization level \(level) is not supported: choose 0, 1, 2 or 3"
        }
    }
}
