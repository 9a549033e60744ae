{{- /*
The recording and alerting rules, shared by the PrometheusRule and by the plain rule file
deploy/prometheus/llmcost-rules.yaml (rendered from these defaults; promtool tests in
deploy/prometheus/tests/ run against it).

Series of the operator are first reduced to one per workload (`max by` the workload's keys and
the metric's own label), so two operator replicas or an HA pair of Prometheus servers never
double a sum. Policy-level $/1M is total cost ÷ total tokens (DESIGN "Exported metrics"),
never an average of per-workload ratios.
*/ -}}
{{- define "llm-cost-operator.ruleGroups" -}}
{{- $r := .Values.prometheusRule }}
{{- $a := $r.alerts }}
{{- $job := .Values.serviceMonitor.job }}
{{- $w := "namespace, policy, workload" -}}
groups:
  - name: llmcost.recording
    {{- with $r.interval }}
    interval: {{ . }}
    {{- end }}
    rules:
      - record: namespace_policy:llmcost_hourly_cost_usd:sum
        expr: |
          sum by (namespace, policy) (
            max by ({{ $w }}, capacity_type) (llmcost_hourly_cost_usd)
          )
      - record: namespace_policy:llmcost_tokens_per_second:sum
        expr: |
          sum by (namespace, policy) (
            max by ({{ $w }}, token_type) (llmcost_tokens_per_second)
          )
      # Policy-level $/1M: the policy's $/h over its tokens/s (no data while no tokens flow).
      - record: namespace_policy:llmcost_cost_per_million_tokens_usd:ratio
        expr: |
          namespace_policy:llmcost_hourly_cost_usd:sum
            / on (namespace, policy) (namespace_policy:llmcost_tokens_per_second:sum > 0)
            * 1e6 / 3600
      # Policy-level input and output $/1M: each workload's token-type dollars over the
      # policy's tokens of that type (workloads without a split count in neither).
      - record: namespace_policy_token_type:llmcost_cost_per_million_tokens_usd:ratio
        expr: |
          sum by (namespace, policy, token_type) (
            max by ({{ $w }}, token_type) (llmcost_cost_per_million_tokens_usd{token_type=~"input|output"})
            * on ({{ $w }}, token_type)
            max by ({{ $w }}, token_type) (llmcost_tokens_per_second)
          )
          / on (namespace, policy, token_type) (
            sum by (namespace, policy, token_type) (
              max by ({{ $w }}, token_type) (llmcost_tokens_per_second)
              and on ({{ $w }}, token_type)
              max by ({{ $w }}, token_type) (llmcost_cost_per_million_tokens_usd)
            ) > 0
          )
      - record: namespace_capacity_type:llmcost_hourly_cost_usd:sum
        expr: |
          sum by (namespace, capacity_type) (
            max by ({{ $w }}, capacity_type) (llmcost_hourly_cost_usd)
          )
      - record: namespace_policy_cache:llmcost_cache_savings_usd_per_hour:sum
        expr: |
          sum by (namespace, policy, cache) (
            max by ({{ $w }}, cache) (llmcost_cache_savings_usd_per_hour)
          )
      # What the same tokens would cost at each compared API, minus what they cost here ($/h).
      - record: namespace_policy_api:llmcost_api_equivalent_savings_usd_per_hour:sum
        expr: |
          sum by (namespace, policy, api) (
            max by ({{ $w }}, api) (llmcost_api_equivalent_cost_per_million_tokens_usd)
              * on ({{ $w }}) group_left
                sum by ({{ $w }}) (max by ({{ $w }}, token_type) (llmcost_tokens_per_second))
              * 3600 / 1e6
            - on ({{ $w }}) group_left
                sum by ({{ $w }}) (max by ({{ $w }}, capacity_type) (llmcost_hourly_cost_usd))
          )
  - name: llmcost.alerts
    {{- with $r.interval }}
    interval: {{ . }}
    {{- end }}
    rules:
      - alert: LLMCostPerMillionTokensDrift
        expr: |
          max by ({{ $w }}) (llmcost_cost_drift_ratio) > {{ $a.drift.thresholdRatio }}
          and on ({{ $w }})
          max by ({{ $w }}) (llmcost_data_stale) == 0
        for: {{ $a.drift.for }}
        labels:
          severity: {{ $a.drift.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: {{`"$/1M tokens of {{ $labels.namespace }}/{{ $labels.workload }} is {{ $value | printf \"%.2f\" }}× its baseline"`}}
          description: {{`"The live cost per million tokens of workload {{ $labels.workload }} (policy {{ $labels.policy }}) has stayed above`}} {{ $a.drift.thresholdRatio }}{{`× its drift baseline (spec.drift.baselineWindow) with fresh data. Look for lower utilization, a price change or traffic moving to a dearer pool."`}}
      - alert: LLMCostDataStale
        expr: |
          max by ({{ $w }}) (llmcost_data_stale) == 1
        for: {{ $a.dataStale.for }}
        labels:
          severity: {{ $a.dataStale.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: {{`"Cost figures of {{ $labels.namespace }}/{{ $labels.workload }} are stale"`}}
          description: {{`"The operator has no fresh token or GPU metrics for workload {{ $labels.workload }} (policy {{ $labels.policy }}): the last good figures are kept and spot scaling holds. Check the engine's and DCGM's scrape targets and the policy's MetricsAvailable condition."`}}
      - alert: LLMCostPrefixCacheHitRatioCollapse
        expr: |
          max by ({{ $w }}) (llmcost_cache_hit_ratio{cache="prefix"})
            < {{ $a.prefixCacheCollapse.dropRatio }} * max by ({{ $w }}) (avg_over_time(llmcost_cache_hit_ratio{cache="prefix"}[{{ $a.prefixCacheCollapse.baselineWindow }}]))
          and on ({{ $w }})
          max by ({{ $w }}) (avg_over_time(llmcost_cache_hit_ratio{cache="prefix"}[{{ $a.prefixCacheCollapse.baselineWindow }}])) >= {{ $a.prefixCacheCollapse.minBaselineRatio }}
          and on ({{ $w }})
          max by ({{ $w }}) (llmcost_data_stale) == 0
        for: {{ $a.prefixCacheCollapse.for }}
        labels:
          severity: {{ $a.prefixCacheCollapse.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: {{`"Prefix-cache hit ratio of {{ $labels.namespace }}/{{ $labels.workload }} collapsed to {{ $value | humanizePercentage }}"`}}
          description: {{`"The prefix-cache hit ratio of workload {{ $labels.workload }} fell below`}} {{ $a.prefixCacheCollapse.dropRatio }}{{`× its`}} {{ $a.prefixCacheCollapse.baselineWindow }}{{` average: prompts are recomputed and the cache's dollar savings are gone. Common causes: a changed system prompt or template, a router no longer pinning sessions, or a smaller KV cache."`}}
      - alert: LLMCostSpotSavingsLost
        expr: |
          max by ({{ $w }}) (llmcost_spot_recommended_replicas) > 0
          and on ({{ $w }})
          max by ({{ $w }}) (llmcost_replicas{capacity_type="spot"}) == 0
        for: {{ $a.spotSavingsLost.for }}
        labels:
          severity: {{ $a.spotSavingsLost.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: {{`"Spot pool {{ $labels.namespace }}/{{ $labels.workload }} is at zero while demand needs {{ $value }} spot replicas"`}}
          description: {{`"The spot planner recommends {{ $value }} replicas of {{ $labels.workload }} on spot capacity, and none runs on spot nodes: the burst is served on-demand (or not at all) and the projected spot savings are lost. Check spot capacity (Karpenter NodePool limits, interruptions), the workload's tolerations, and the policy's spot mode."`}}
      - alert: LLMCostOperatorDown
        expr: |
          max by (job) (up{job="{{ $job }}"}) == 0
        for: {{ $a.operatorDown.for }}
        labels:
          severity: {{ $a.operatorDown.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "llm-cost-operator is down"
          description: "Prometheus cannot scrape any llm-cost-operator instance: cost metrics are not updated and spot scaling has stopped."
      - alert: LLMCostOperatorAbsent
        expr: |
          absent(up{job="{{ $job }}"})
        for: {{ $a.operatorDown.for }}
        labels:
          severity: {{ $a.operatorDown.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "llm-cost-operator is not scraped"
          description: "No target of job '{{ $job }}' exists: the operator is not deployed, or its ServiceMonitor is not selected by Prometheus."
      - alert: LLMCostOperatorQueriesFailing
        expr: |
          sum by (job) (rate(llmcost_prometheus_queries_total{job="{{ $job }}", outcome=~"error|invalid"}[10m]))
            / sum by (job) (rate(llmcost_prometheus_queries_total{job="{{ $job }}"}[10m]))
            > {{ $a.queryFailures.ratio }}
        for: {{ $a.queryFailures.for }}
        labels:
          severity: {{ $a.queryFailures.severity }}
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: {{`"llm-cost-operator: {{ $value | humanizePercentage }} of its Prometheus queries fail"`}}
          description: "The operator's PromQL queries fail or return invalid data (llmcost_prometheus_queries_total by outcome): check prometheus.url, its auth and TLS settings, and the operator's log."
{{- end }}
