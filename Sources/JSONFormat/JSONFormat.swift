import Foundation

/// The one JSON configuration ShadowMover writes and reads — store objects, the shadow copy
/// registry, job history, `--json` output: keys sorted (identical content encodes identically, so it
/// hashes identically), slashes not escaped, and dates as ISO 8601 in UTC to the nanosecond
/// (`2026-11-24T19:22:31.123456789Z`; readers also take whole seconds).
public enum JSONFormat {
    /// An encoder in this format; `pretty` indents (for people: `--json`, records on disk).
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            let (seconds, nanoseconds) = split(date)
            try c.encode(iso8601(seconds: seconds, nanoseconds: nanoseconds))
        }
        return e
    }

    /// A decoder for this format.
    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let (seconds, nanoseconds) = parseISO8601(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad time '\(text)'"))
            }
            return Date(timeIntervalSince1970: Double(seconds) + Double(nanoseconds) / 1e9)
        }
        return d
    }

    /// Whole seconds since 1970 and nanoseconds (0–999,999,999) of a date, rounded to the nanosecond.
    public static func split(_ date: Date) -> (seconds: Int64, nanoseconds: Int32) {
        let t = date.timeIntervalSince1970
        var s = Int64(t.rounded(.down))
        var ns = Int32(((t - Double(s)) * 1e9).rounded())
        if ns >= 1_000_000_000 {
            s += 1
            ns -= 1_000_000_000
        }
        return (s, ns)
    }

    /// `2026-11-24T19:22:31.123456789Z`
    public static func iso8601(seconds: Int64, nanoseconds: Int32) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, nanoseconds)
    }

    /// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC; up to nine digits of fraction).
    public static func parseISO8601(_ text: String) -> (seconds: Int64, nanoseconds: Int32)? {
        let scalars = Array(text.utf8)
        guard scalars.count >= 20, scalars.last == UInt8(ascii: "Z") else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= scalars.count else { return nil }
            return Int(String(decoding: scalars[from..<from + count], as: UTF8.self))
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
            let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var nanos = 0
        if scalars[19] == UInt8(ascii: ".") {
            let digits = scalars[20..<(scalars.count - 1)]
            guard !digits.isEmpty, digits.count <= 9, let value = Int(String(decoding: digits, as: UTF8.self)) else { return nil }
            nanos = value * Int(pow(10.0, Double(9 - digits.count)))
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return (Int64(timegm(&parts)), Int32(nanos))
    }
}
