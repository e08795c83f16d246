import Foundation

/// The subset of TOML job files use: `key = value` lines, `[section]` headers, `#` comments; values
/// are strings ("…" with \" \\ \n \t escapes), integers, floats, booleans and one-line arrays of
/// those. Every value keeps its line, so validation can point at it.
public enum TOMLValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    case array([TOMLValue])

    /// The value as TOML writes it.
    public var description: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a number"
        case .bool: "true or false"
        case .array: "an array"
        }
    }
}

/// One `key = value` line.
public struct TOMLEntry: Sendable {
    /// `section.key`, or `key` at the top.
    public var key: String
    /// Its value.
    public var value: TOMLValue
    /// Its line in the file.
    public var line: Int
}

/// A problem with a job file, at a line.
public struct TOMLError: Error, CustomStringConvertible, Sendable {
    /// The line (1 is the first).
    public var line: Int
    /// What is wrong and how to fix it.
    public var message: String
    /// "line N: message".
    public var description: String { "line \(line): \(message)" }
}

enum TOML {
    /// Parses `text`; returns the entries and every syntax error (parsing goes on after one).
    static func parse(_ text: String) -> (entries: [TOMLEntry], errors: [TOMLError]) {
        var entries: [TOMLEntry] = []
        var errors: [TOMLError] = []
        var section = ""
        var seen = Set<String>()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let content = stripComment(String(rawLine)).trimmingCharacters(in: .whitespaces)
            if content.isEmpty { continue }
            if content.hasPrefix("[") {
                guard content.hasSuffix("]"), !content.hasPrefix("[[") else {
                    errors.append(TOMLError(line: line, message: "a section header looks like [name]"))
                    continue
                }
                section = String(content.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let eq = content.firstIndex(of: "=") else {
                errors.append(TOMLError(line: line, message: "expected key = value"))
                continue
            }
            let key = content[..<eq].trimmingCharacters(in: .whitespaces)
            let full = section.isEmpty ? key : "\(section).\(key)"
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                errors.append(TOMLError(line: line, message: "bad key '\(key)'"))
                continue
            }
            guard seen.insert(full).inserted else {
                errors.append(TOMLError(line: line, message: "'\(full)' is set twice"))
                continue
            }
            var rest = Substring(content[content.index(after: eq)...])
            do {
                let value = try parseValue(&rest)
                guard rest.trimmingCharacters(in: .whitespaces).isEmpty else { throw TOMLError(line: line, message: "unexpected text after the value") }
                entries.append(TOMLEntry(key: full, value: value, line: line))
            } catch let e as TOMLError {
                errors.append(TOMLError(line: line, message: e.message))
            } catch {
                errors.append(TOMLError(line: line, message: "\(error)"))
            }
        }
        return (entries, errors)
    }

    private static func stripComment(_ s: String) -> String {
        var inString = false, escaped = false
        for (i, c) in s.enumerated() {
            if escaped { escaped = false; continue }
            if c == "\\" && inString { escaped = true; continue }
            if c == "\"" { inString.toggle() }
            if c == "#" && !inString { return String(s.prefix(i)) }
        }
        return s
    }

    /// Arrays nest at most this deep: a job's values are strings and lists of strings, and a line of
    /// `[[[[…` must be an error, not the end of the stack.
    static let maximumNesting = 8

    private static func parseValue(_ s: inout Substring, depth: Int = 0) throws -> TOMLValue {
        guard depth <= maximumNesting else { throw TOMLError(line: 0, message: "arrays nest deeper than \(maximumNesting) levels") }
        s = s.drop { $0 == " " || $0 == "\t" }
        guard let first = s.first else { throw TOMLError(line: 0, message: "missing value") }
        if first == "\"" {
            s = s.dropFirst()
            var out = ""
            while let c = s.first {
                s = s.dropFirst()
                if c == "\"" { return .string(out) }
                if c == "\\", let e = s.first {
                    s = s.dropFirst()
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\"": out.append("\"")
                    case "\\": out.append("\\")
                    default: throw TOMLError(line: 0, message: "unknown escape \\\(e)")
                    }
                } else {
                    out.append(c)
                }
            }
            throw TOMLError(line: 0, message: "unterminated string")
        }
        if first == "[" {
            s = s.dropFirst()
            var items: [TOMLValue] = []
            while true {
                s = s.drop { $0 == " " || $0 == "\t" }
                if s.first == "]" { s = s.dropFirst(); return .array(items) }
                items.append(try parseValue(&s, depth: depth + 1))
                s = s.drop { $0 == " " || $0 == "\t" }
                if s.first == "," { s = s.dropFirst(); continue }
                guard s.first == "]" else { throw TOMLError(line: 0, message: "expected , or ] in the array") }
            }
        }
        let word = s.prefix { $0 != "," && $0 != "]" && $0 != " " && $0 != "\t" }
        s = s.dropFirst(word.count)
        if word == "true" { return .bool(true) }
        if word == "false" { return .bool(false) }
        if let i = Int64(word.replacingOccurrences(of: "_", with: "")) { return .integer(i) }
        if let d = Double(word) { return .float(d) }
        throw TOMLError(line: 0, message: "'\(word)' is not a value: strings need quotes")
    }
}
