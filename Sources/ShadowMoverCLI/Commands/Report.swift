import ArgumentParser
import ChunkStore
import Foundation
import ShadowCopy

struct InspectReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML page of charts: sizes over snapshots, dedup and compression, chunk sizes, freeze windows.",
        discussion: "The page fetches nothing: the charts are inline SVG. tools/render-report.sh screenshots it with headless Chromium.")
    @OptionGroup var storeOptions: StoreOptions
    @Option(help: "Where to write the HTML page.") var html: String

    func run() throws {
        let store = try storeOptions.open()
        let records = try store.snapshots().records
        let stats = try Inspector(store: store).stats(snapshots: records)
        // Ratios are store-wide after each snapshot (all its and earlier snapshots' logical bytes over
        // the new data they added): one snapshot's own logical / new ratio is unbounded for a snapshot
        // that adds almost nothing, and would flatten every other point.
        var stored: UInt64 = 0, logical: UInt64 = 0, added: UInt64 = 0, addedStored: UInt64 = 0
        var rows: [(label: String, logical: Double, stored: Double, dedup: Double, compression: Double, freeze: Double?)] = []
        for (id, r) in records {
            stored += r.summary.bytesStored + r.summary.treeBytesStored
            logical += r.summary.bytesProcessed
            added += r.summary.bytesAdded
            addedStored += r.summary.bytesStored
            let freeze = (try? r.shadowCopy?.decode(SessionReport.self))??.freezeWindow?.totalMs
            rows.append(
                (
                    String(id.prefix(8)), Double(r.summary.bytesProcessed), Double(stored),
                    added == 0 ? 1 : Double(logical) / Double(added), addedStored == 0 ? 1 : Double(added) / Double(addedStored), freeze
                ))
        }
        var body = "<h1>ShadowMover store report</h1>"
        body +=
            "<p class=meta>\(Self.escape(store.location)) · \(records.count) snapshots · \(stats.uniqueChunks) unique chunks · logical \(Output.bytes(stats.logicalBytes)) · stored \(Output.bytes(stats.storedBytes)) · dedup \(String(format: "%.2f", stats.dedupRatio))× · generated \(Output.time(Date()))</p>"
        body += Self.section(
            "Stored vs logical size over snapshots",
            Self.lines(
                rows.map(\.label), [("logical size of the snapshot", rows.map(\.logical), "#3b82f6"), ("store size after it", rows.map(\.stored), "#f97316")],
                unit: "bytes"))
        body += Self.section(
            "Dedup and compression ratio of the store after each snapshot",
            Self.lines(
                rows.map(\.label),
                [
                    ("dedup ratio (logical bytes so far / new data so far)", rows.map(\.dedup), "#10b981"),
                    ("compression ratio (new data / its stored bytes)", rows.map(\.compression), "#8b5cf6"),
                ], unit: "×"))
        body += Self.section(
            "Chunk size histogram (unique chunks, by size up to)",
            Self.bars(stats.histogram.map { Self.shortSize($0.upTo) }, stats.histogram.map { Double($0.chunks) }, color: "#0ea5e9"))
        let frozen = rows.filter { $0.freeze != nil }
        body += Self.section(
            "Freeze window per snapshot (ms)",
            frozen.isEmpty
                ? "<p>No snapshot was taken through a shadow copy session.</p>" : Self.bars(frozen.map(\.label), frozen.map { $0.freeze! }, color: "#ef4444"))
        let page = """
            <!doctype html><html lang=en><head><meta charset=utf-8><title>ShadowMover report</title>
            <style>body{font:14px system-ui,sans-serif;margin:24px;color:#111;max-width:1100px}h1{font-size:22px}h2{font-size:16px;margin-top:28px}
            .meta{color:#555}svg{background:#fafafa;border:1px solid #e5e7eb}.legend span{display:inline-block;margin-right:16px}
            .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}</style></head>
            <body>\(body)</body></html>
            """
        try page.write(toFile: html, atomically: true, encoding: .utf8)
        print("wrote \(html)")
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func section(_ title: String, _ content: String) -> String { "<h2>\(escape(title))</h2>\(content)" }

    static let width = 1000.0, height = 260.0, left = 70.0, bottom = 40.0

    static func axisLabel(_ v: Double, _ unit: String) -> String {
        unit == "bytes" ? Output.bytes(UInt64(max(0, v))) : String(format: "%.1f%@", v, unit)
    }

    /// A line chart of several series over the same labels.
    static func lines(_ labels: [String], _ series: [(String, [Double], String)], unit: String) -> String {
        guard !labels.isEmpty else { return "<p>No snapshots.</p>" }
        let top = max(series.flatMap(\.1).max() ?? 1, 1e-9)
        let plotW = width - left - 50, plotH = height - bottom - 20
        func x(_ i: Int) -> Double { left + (labels.count == 1 ? plotW / 2 : plotW * Double(i) / Double(labels.count - 1)) }
        func y(_ v: Double) -> Double { 20 + plotH * (1 - v / top) }
        var svg = "<svg width=\(Int(width)) height=\(Int(height)) xmlns='http://www.w3.org/2000/svg'>"
        for k in 0...4 {
            let v = top * Double(k) / 4
            svg +=
                "<line x1=\(left) x2=\(width - 20) y1=\(y(v)) y2=\(y(v)) stroke='#e5e7eb'/><text x=\(left - 6) y=\(y(v) + 4) font-size=11 text-anchor=end>\(escape(axisLabel(v, unit)))</text>"
        }
        let step = max(1, labels.count / 12)
        for (i, l) in labels.enumerated() where i % step == 0 {
            svg += "<text x=\(x(i)) y=\(height - bottom + 16) font-size=10 text-anchor=middle>\(escape(l))</text>"
        }
        for (_, values, color) in series {
            let points = values.enumerated().map { "\(x($0.offset)),\(y($0.element))" }.joined(separator: " ")
            svg += "<polyline fill=none stroke='\(color)' stroke-width=2 points='\(points)'/>"
            for (i, v) in values.enumerated() { svg += "<circle cx=\(x(i)) cy=\(y(v)) r=3 fill='\(color)'/>" }
        }
        svg += "</svg><div class=legend>" + series.map { "<span><i style='background:\($0.2)'></i>\(escape($0.0))</span>" }.joined() + "</div>"
        return svg
    }

    /// "64B", "4K", "1M": a power-of-two size short enough for an axis label.
    static func shortSize(_ bytes: Int) -> String {
        bytes >= 1 << 30 ? "\(bytes >> 30)G" : bytes >= 1 << 20 ? "\(bytes >> 20)M" : bytes >= 1 << 10 ? "\(bytes >> 10)K" : "\(bytes)B"
    }

    /// A bar chart.
    static func bars(_ labels: [String], _ values: [Double], color: String) -> String {
        guard !values.isEmpty else { return "<p>Nothing to show.</p>" }
        let top = max(values.max() ?? 1, 1e-9)
        let plotW = width - left - 50, plotH = height - bottom - 20
        let slot = plotW / Double(values.count)
        var svg = "<svg width=\(Int(width)) height=\(Int(height)) xmlns='http://www.w3.org/2000/svg'>"
        for k in 0...4 {
            let v = top * Double(k) / 4
            let yy = 20 + plotH * (1 - v / top)
            svg +=
                "<line x1=\(left) x2=\(width - 20) y1=\(yy) y2=\(yy) stroke='#e5e7eb'/><text x=\(left - 6) y=\(yy + 4) font-size=11 text-anchor=end>\(String(format: v >= 100 ? "%.0f" : "%.2f", v))</text>"
        }
        let step = max(1, values.count / 14)
        for (i, v) in values.enumerated() {
            let h = plotH * v / top
            svg +=
                "<rect x=\(left + slot * Double(i) + slot * 0.15) y=\(20 + plotH - h) width=\(slot * 0.7) height=\(h) fill='\(color)'><title>\(escape(labels[i])): \(v)</title></rect>"
            if i % step == 0 {
                svg += "<text x=\(left + slot * (Double(i) + 0.5)) y=\(height - bottom + 16) font-size=10 text-anchor=middle>\(escape(labels[i]))</text>"
            }
        }
        return svg + "</svg>"
    }
}
