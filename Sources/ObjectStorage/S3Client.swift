import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// What went wrong talking to an S3 endpoint, phrased so a user can act on it.
public enum S3Error: Error, CustomStringConvertible {
    case configuration(String)
    /// The endpoint answered with an error status (after retries, for those worth retrying).
    case status(operation: String, key: String, code: UInt, body: String)
    /// The endpoint could not be reached (after retries).
    case unreachable(endpoint: String, underlying: String)

    /// What failed and what to do.
    public var description: String {
        switch self {
        case .configuration(let m): m
        case .status(let operation, let key, let code, let body):
            switch code {
            case 403:
                "\(operation) \(key) was refused (403 \(Self.code(body) ?? "Forbidden")): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the job's credentials file)"
            case 404 where Self.code(body) == "NoSuchBucket":
                "\(operation) \(key): the bucket does not exist: create the store with `shadowmover init`, or check the bucket name"
            default: "\(operation) \(key) failed: HTTP \(code) \(Self.code(body) ?? "")".trimmingCharacters(in: .whitespaces)
            }
        case .unreachable(let endpoint, let underlying):
            "cannot reach the S3 endpoint \(endpoint) (\(underlying)): check the address and that the service is running"
        }
    }

    /// The `<Code>` of an S3 error document.
    static func code(_ body: String) -> String? { XML.values("Code", in: body).first }
}

/// A blocking S3 client (path-style, Signature V4) on async-http-client, for the store's worker threads:
/// each call waits for its answer. At most `parallelRequests` requests are in flight at once; errors
/// worth retrying (connection failures, 5xx, 503 SlowDown, 429) are retried with exponential back-off
/// and full jitter, `retries` times.
public final class S3Client: @unchecked Sendable {  // immutable after init; the semaphore is thread-safe
    /// The service's address (scheme, host, port).
    public let endpoint: URL
    /// The bucket.
    public let bucket: String
    let signer: SigV4
    let retries: Int
    private let slots: DispatchSemaphore
    private let hostHeader: String

    /// One HTTP client per process: its event loops and connection pool serve every store.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(120)))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 32
        // A refused connection fails the request at once; `send` retries it on its own schedule (the
        // client's own retries would wait out the connect timeout on every request).
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Keys per ListObjectsV2 page (S3's maximum is 1,000; smaller only to test continuation).
    let listPageSize: Int

    /// A client of `bucket` at `endpoint` signing with `credentials`; `listPageSize` keys per ListObjectsV2 page.
    public init(
        endpoint: URL, bucket: String, credentials: S3Credentials, parallelRequests: Int = 8, retries: Int = 8, listPageSize: Int = 1000
    ) {
        self.listPageSize = listPageSize
        self.endpoint = endpoint
        self.bucket = bucket
        self.signer = SigV4(credentials: credentials)
        self.retries = retries
        self.slots = DispatchSemaphore(value: max(1, parallelRequests))
        let port = endpoint.port.map { ":\($0)" } ?? ""
        self.hostHeader = (endpoint.host ?? "") + port
    }

    struct Response: Sendable {
        var status: UInt = 0
        var headers: HTTPHeaders = [:]
        /// The body, unless it went into the caller's buffer.
        var body: ByteBuffer?
        /// Bytes written into the caller's buffer.
        var received = 0
        var text: String { body.map { String(buffer: $0) } ?? "" }
    }

    /// Sends one request (retrying as above) and returns the answer, whatever its status. A successful
    /// answer's body goes into `destination` when one is given (see `ResponseReceiver`).
    func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [],
        body: [UnsafeRawBufferPointer] = [], into destination: UnsafeMutableRawBufferPointer? = nil, skipping: Int = 0, operation: String
    ) throws -> Response {
        let path = "/" + SigV4.encode(bucket) + (key.map { "/" + SigV4.encode($0, keepSlash: true) } ?? "")
        let queryString = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        let url = endpoint.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path + (queryString.isEmpty ? "" : "?" + queryString)
        let payloadHash = body.isEmpty ? SigV4.emptyPayloadHash : SigV4.payloadHash(body)
        var buffer: ByteBuffer?
        if !body.isEmpty {
            var b = ByteBufferAllocator().buffer(capacity: body.reduce(0) { $0 + $1.count })
            for part in body { b.writeBytes(part) }
            buffer = b
        }
        var attempt = 0
        while true {
            attempt += 1
            let signed = signer.headers(
                method: method.rawValue, host: hostHeader, path: path, query: query, headers: extra, payloadHash: payloadHash)
            var headers = HTTPHeaders(signed)
            if let buffer { headers.replaceOrAdd(name: "Content-Length", value: "\(buffer.readableBytes)") }
            let request = try HTTPClient.Request(url: url, method: method, headers: headers, body: buffer.map { .byteBuffer($0) })
            let receiver = ResponseReceiver(into: destination, skipping: skipping)
            let outcome: Result<Response, Error>
            slots.wait()
            outcome = Result { try Self.http.execute(request: request, delegate: receiver, deadline: .now() + .seconds(300)).wait() }
            slots.signal()
            switch outcome {
            case .success(let response):
                let retryable = response.status >= 500 || response.status == 429
                if !retryable || attempt > retries { return response }
            case .failure(let error):
                if attempt > retries { throw S3Error.unreachable(endpoint: endpoint.absoluteString, underlying: "\(error)") }
            }
            Self.backOff(attempt)
        }
    }

    /// Sleeps before retry `attempt`: full jitter over 100 ms × 2^(attempt−1), at most 5 s.
    static func backOff(_ attempt: Int) {
        let ceiling = min(5.0, 0.1 * pow(2.0, Double(attempt - 1)))
        usleep(UInt32(Double.random(in: ceiling / 2...ceiling) * 1_000_000))
    }

    /// Throws the error an unexpected status means.
    static func fail(_ r: Response, _ operation: String, _ key: String) -> S3Error {
        .status(operation: operation, key: key, code: r.status, body: r.text)
    }

    // MARK: Operations

    /// True when the bucket exists (and the keys may see it).
    public func bucketExists() throws -> Bool {
        let r = try send(.HEAD, key: nil, operation: "HEAD bucket")
        if r.status == 404 { return false }
        guard r.status == 200 else { throw Self.fail(r, "HEAD bucket", bucket) }
        return true
    }

    /// Creates the bucket (an existing one of ours is fine).
    public func createBucket() throws {
        let r = try send(.PUT, key: nil, operation: "create bucket")
        guard r.status == 200 || (r.status == 409 && S3Error.code(r.text) == "BucketAlreadyOwnedByYou") else {
            throw Self.fail(r, "create bucket", bucket)
        }
    }

    /// Uploads `parts` as one object with one PUT.
    public func put(_ key: String, _ parts: [UnsafeRawBufferPointer]) throws {
        let r = try send(.PUT, key: key, body: parts, operation: "PUT")
        guard r.status == 200 else { throw Self.fail(r, "PUT", key) }
    }

    /// Uploads `parts` (concatenated) in multipart chunks of `partSize`, up to `parallel` at once.
    public func putMultipart(_ key: String, _ parts: [UnsafeRawBufferPointer], partSize: Int, parallel: Int) throws {
        let start = try send(.POST, key: key, query: [("uploads", "")], operation: "start multipart upload")
        guard start.status == 200, let uploadID = XML.values("UploadId", in: start.text).first else {
            throw Self.fail(start, "start multipart upload", key)
        }
        let whole = Concatenation(parts: parts)
        let count = (whole.count + partSize - 1) / partSize
        let etags = ETags(count)
        // Uploads wait on the network, not the CPU: `parallel` threads, each taking the next part.
        let next = PartCounter()
        let uploads = DispatchGroup()
        for _ in 0..<min(parallel, count) {
            uploads.enter()
            Thread { [self] in
                while let n = next.take(below: count), !etags.failed {
                    do {
                        let r = try send(
                            .PUT, key: key, query: [("partNumber", "\(n + 1)"), ("uploadId", uploadID)],
                            body: whole.slice(n * partSize, min(whole.count, (n + 1) * partSize)), operation: "PUT part")
                        guard r.status == 200, let etag = r.headers.first(name: "ETag") else { throw Self.fail(r, "PUT part \(n + 1) of", key) }
                        etags.set(n, etag)
                    } catch {
                        etags.fail(error)
                    }
                }
                uploads.leave()
            }.start()
        }
        uploads.wait()
        if let error = etags.error {
            _ = try? send(.DELETE, key: key, query: [("uploadId", uploadID)], operation: "abort multipart upload")
            throw error
        }
        let xml =
            "<CompleteMultipartUpload>"
            + etags.values.enumerated().map { "<Part><PartNumber>\($0.offset + 1)</PartNumber><ETag>\($0.element)</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
        let done = try Array(xml.utf8).withUnsafeBytes { body in
            try send(.POST, key: key, query: [("uploadId", uploadID)], body: [body], operation: "complete multipart upload")
        }
        // A completion can fail with 200 and an error document.
        guard done.status == 200, S3Error.code(done.text) == nil else { throw Self.fail(done, "complete multipart upload", key) }
    }

    /// Reads bytes `offset..<offset+buffer.count` of `key` into `buffer`, as they arrive; nil when there
    /// is no such object.
    public func get(_ key: String, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard buffer.count > 0 else { return 0 }
        let r = try send(
            .GET, key: key, headers: [("Range", "bytes=\(offset)-\(offset + buffer.count - 1)")], into: buffer, skipping: offset, operation: "GET")
        if r.status == 404 { return nil }
        if r.status == 416 { return 0 }  // the range starts at or past the end
        guard r.status == 206 || r.status == 200 else { throw Self.fail(r, "GET", key) }
        return r.received
    }

    /// The whole object, or nil when there is none.
    public func get(_ key: String) throws -> [UInt8]? {
        let r = try send(.GET, key: key, operation: "GET")
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw Self.fail(r, "GET", key) }
        return r.body.map { Array(buffer: $0) } ?? []
    }

    /// The object's size, or nil when there is none.
    public func head(_ key: String) throws -> Int? {
        let r = try send(.HEAD, key: key, operation: "HEAD")
        if r.status == 404 { return nil }
        guard r.status == 200, let length = r.headers.first(name: "Content-Length").flatMap(Int.init) else { throw Self.fail(r, "HEAD", key) }
        return length
    }

    /// Removes an object (a missing one is not an error).
    public func delete(_ key: String) throws {
        let r = try send(.DELETE, key: key, operation: "DELETE")
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw Self.fail(r, "DELETE", key) }
    }

    /// Every key under `prefix` (ListObjectsV2, following continuation tokens).
    public func list(_ prefix: String) throws -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix), ("max-keys", "\(listPageSize)")]
            if let token { query.append(("continuation-token", token)) }
            let r = try send(.GET, key: nil, query: query, operation: "LIST")
            guard r.status == 200 else { throw Self.fail(r, "LIST", prefix) }
            let text = r.text
            keys += XML.values("Key", in: text)
            token = XML.values("IsTruncated", in: text).first == "true" ? XML.values("NextContinuationToken", in: text).first : nil
        } while token != nil
        return keys
    }
}

/// Buffers read as one byte string (a pack is its blob area and its trailer). Only read, by several
/// threads, while the caller keeps the buffers alive.
/// Receives one response: its status and headers, and its body — straight into `destination` when
/// the caller gave one and the answer is a success (a ranged GET's bytes, copied once, however large),
/// else into a buffer of its own (a listing, an error document).
final class ResponseReceiver: HTTPClientResponseDelegate, @unchecked Sendable {  // called on one event loop
    typealias Response = S3Client.Response
    private let destination: UnsafeMutableRawBufferPointer?
    /// Bytes to drop first: a server that ignores `Range` answers 200 with the whole object.
    private var skip: Int
    private var response = Response()

    init(into destination: UnsafeMutableRawBufferPointer?, skipping: Int) {
        self.destination = destination
        self.skip = skipping
    }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        response.status = head.status.code
        response.headers = head.headers
        if head.status.code != 200 { skip = 0 }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ part: ByteBuffer) -> EventLoopFuture<Void> {
        var part = part
        if let destination, response.status == 200 || response.status == 206 {
            let dropped = min(skip, part.readableBytes)
            part.moveReaderIndex(forwardBy: dropped)
            skip -= dropped
            let n = min(part.readableBytes, destination.count - response.received)
            if n > 0 {
                part.withUnsafeReadableBytes { destination.baseAddress!.advanced(by: response.received).copyMemory(from: $0.baseAddress!, byteCount: n) }
                response.received += n
            }
        } else if response.body == nil {
            response.body = part
        } else {
            response.body!.writeBuffer(&part)
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response { response }
}

struct Concatenation: @unchecked Sendable {
    let parts: [UnsafeRawBufferPointer]
    var count: Int { parts.reduce(0) { $0 + $1.count } }

    /// Bytes `from..<to` of the whole, as slices of the parts.
    func slice(_ from: Int, _ to: Int) -> [UnsafeRawBufferPointer] {
        var out: [UnsafeRawBufferPointer] = []
        var base = 0
        for p in parts {
            let lo = max(from, base), hi = min(to, base + p.count)
            if lo < hi { out.append(UnsafeRawBufferPointer(rebasing: p[(lo - base)..<(hi - base)])) }
            base += p.count
        }
        return out
    }
}

/// Hands out part numbers 0, 1, 2, … to upload threads.
final class PartCounter: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var value = 0
    func take(below limit: Int) -> Int? {
        lock.withLock {
            guard value < limit else { return nil }
            defer { value += 1 }
            return value
        }
    }
}

/// ETags of a multipart upload's parts, filled in from several threads.
final class ETags: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var tags: [String]
    private var firstError: Error?
    init(_ count: Int) { tags = Array(repeating: "", count: count) }
    func set(_ n: Int, _ tag: String) { lock.withLock { tags[n] = tag } }
    func fail(_ e: Error) { lock.withLock { if firstError == nil { firstError = e } } }
    var failed: Bool { lock.withLock { firstError != nil } }
    var error: Error? { lock.withLock { firstError } }
    var values: [String] { lock.withLock { tags } }
}

/// The few pieces of S3's XML answers the client reads: the text of every `<name>` element.
enum XML {
    static func values(_ name: String, in text: String) -> [String] {
        var out: [String] = []
        var rest = text[...]
        let open = "<\(name)>", close = "</\(name)>"
        while let a = rest.range(of: open), let b = rest.range(of: close, range: a.upperBound..<rest.endIndex) {
            out.append(unescape(String(rest[a.upperBound..<b.lowerBound])))
            rest = rest[b.upperBound...]
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        return s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&#34;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }
}
