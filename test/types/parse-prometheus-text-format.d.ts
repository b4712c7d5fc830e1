// Types for parse-prometheus-text-format (it ships none): the prom2json-like shape it returns.
declare module 'parse-prometheus-text-format' {
  export interface PromSample { value: string; labels?: Record<string, string> }
  export interface PromHistogramSample { buckets: Record<string, string>; count: string; sum: string; labels?: Record<string, string> }
  export interface PromFamily {
    name: string;
    help: string;
    type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
    metrics: Array<PromSample | PromHistogramSample>;
  }
  export default function parsePrometheusTextFormat(text: string): PromFamily[];
}
