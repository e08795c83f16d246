import Crypto
import Foundation

/// Credentials for signing S3 requests.
public struct S3Credentials: Sendable {
    /// AWS_ACCESS_KEY_ID.
    public var accessKey: String
    /// AWS_SECRET_ACCESS_KEY.
    public var secretKey: String
    /// AWS_SESSION_TOKEN, for temporary credentials.
    public var sessionToken: String?
    /// The region requests are signed for (AWS_DEFAULT_REGION; Ceph takes any).
    public var region: String

    /// Keys for signing requests.
    public init(accessKey: String, secretKey: String, sessionToken: String? = nil, region: String = "us-east-1") {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.sessionToken = sessionToken
        self.region = region
    }

    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_DEFAULT_REGION`
    /// (or `AWS_REGION`), or nil when the keys are not set.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> S3Credentials? {
        guard let key = env["AWS_ACCESS_KEY_ID"], !key.isEmpty, let secret = env["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else { return nil }
        return S3Credentials(
            accessKey: key, secretKey: secret, sessionToken: env["AWS_SESSION_TOKEN"],
            region: env["AWS_DEFAULT_REGION"] ?? env["AWS_REGION"] ?? "us-east-1")
    }

    /// From a file of `KEY=value` lines with the environment's names (a job file names one), so keys
    /// stay out of job files and command lines.
    public static func fromFile(_ path: String) throws -> S3Credentials {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw S3Error.configuration("cannot read the credentials file \(path)")
        }
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { env[parts[0].uppercased()] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"'")) }
        }
        guard let credentials = fromEnvironment(env) else {
            throw S3Error.configuration("the credentials file \(path) has no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY lines")
        }
        return credentials
    }
}

/// AWS Signature Version 4 for S3 (path-style requests, payload hashed): the headers a request needs.
struct SigV4 {
    let credentials: S3Credentials

    /// The headers to add to a request (Authorization, x-amz-date, x-amz-content-sha256, and the
    /// session token when there is one). `path` is already URI-encoded; `query` is unencoded.
    func headers(
        method: String, host: String, path: String, query: [(String, String)], headers extra: [(String, String)],
        payloadHash: String, date: Date = Date()
    ) -> [(String, String)] {
        let amzDate = Self.timestamp(date)
        let day = String(amzDate.prefix(8))
        var signed = extra.map { ($0.0.lowercased(), $0.1.trimmingCharacters(in: .whitespaces)) }
        signed.append(("host", host))
        signed.append(("x-amz-content-sha256", payloadHash))
        signed.append(("x-amz-date", amzDate))
        if let token = credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        signed.sort { $0.0 < $1.0 }
        let canonicalQuery = query.map { (Self.encode($0.0), Self.encode($0.1)) }.sorted { $0 < $1 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let canonicalHeaders = signed.map { "\($0.0):\($0.1)\n" }.joined()
        let signedNames = signed.map(\.0).joined(separator: ";")
        let request = [method, path, canonicalQuery, canonicalHeaders, signedNames, payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(credentials.region)/s3/aws4_request"
        let toSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hex(SHA256.hash(data: Data(request.utf8)))].joined(separator: "\n")
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretKey)".utf8))
        for part in [day, credentials.region, "s3", "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key))
        var out = signed.filter { $0.0 != "host" }
        out.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKey)/\(scope), SignedHeaders=\(signedNames), Signature=\(signature)"))
        return out
    }

    /// SHA-256 of a payload, hex (the `x-amz-content-sha256` value).
    static func payloadHash(_ parts: [UnsafeRawBufferPointer]) -> String {
        var hasher = SHA256()
        for part in parts { hasher.update(bufferPointer: part) }
        return hex(hasher.finalize())
    }

    static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    static func timestamp(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(
            format: "%04d%02d%02dT%02d%02d%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// URI-encodes per SigV4: everything but A–Z a–z 0–9 - . _ ~ (and `/` when `slash` is false).
    static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "/") where keepSlash: out.append("/")
            default: out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
