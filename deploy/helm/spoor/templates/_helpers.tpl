{{/* Names. */}}
{{- define "spoor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spoor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "spoor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spoor.labels" -}}
helm.sh/chart: {{ include "spoor.chart" . }}
{{ include "spoor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "spoor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spoor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The selector labels of one role: (dict "root" $ "role" "coordinator"). */}}
{{- define "spoor.roleSelectorLabels" -}}
{{ include "spoor.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "spoor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spoor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spoor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "spoor.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{- define "spoor.clusterSecretName" -}}
{{- default (printf "%s-cluster-secret" (include "spoor.fullname" .)) .Values.clusterSecret.existingSecret -}}
{{- end -}}

{{- define "spoor.s3SecretName" -}}
{{- default (printf "%s-s3" (include "spoor.fullname" .)) .Values.storage.s3.existingSecret -}}
{{- end -}}

{{/* Whether the pods mount an S3 secret access key. */}}
{{- define "spoor.s3Secret" -}}
{{- if or .Values.storage.s3.existingSecret .Values.storage.s3.secretAccessKey -}}true{{- end -}}
{{- end -}}

{{/* The coordinators' gRPC URLs, pod by pod, through the headless Service. */}}
{{- define "spoor.coordinatorUrls" -}}
{{- $full := include "spoor.fullname" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.coordinator.replicas) -}}
{{- $urls = append $urls (printf "%s://%s-coordinator-%d.%s-coordinator-headless.%s.svc.%s:%d" (include "spoor.scheme" $) $full $i $full $.Release.Namespace $.Values.clusterDomain (int $.Values.ports.grpc)) -}}
{{- end -}}
{{- toJson $urls -}}
{{- end -}}

{{/* The TOML file of one role: (dict "root" $ "role" "ingest"). */}}
{{- define "spoor.config" -}}
{{- $v := .root.Values -}}
{{- $role := .role -}}
# Rendered by the spoor chart for the {{ $role }} role; node.id is set per pod.
data_dir = "/var/lib/spoor"

[node]
http_addr = {{ printf "0.0.0.0:%d" (int $v.ports.http) | toJson }}
grpc_addr = {{ printf "0.0.0.0:%d" (int $v.ports.grpc) | toJson }}

[log]
filter = {{ $v.log.filter | toJson }}
format = {{ $v.log.format | toJson }}

[cluster]
secret_file = "/etc/spoor/secrets/cluster/cluster.secret"

[storage]
url = {{ $v.storage.url | toJson }}

[storage.s3]
{{- with $v.storage.s3.endpoint }}
endpoint = {{ . | toJson }}
{{- end }}
region = {{ $v.storage.s3.region | toJson }}
{{- with $v.storage.s3.accessKeyId }}
access_key_id = {{ . | toJson }}
{{- end }}
{{- if include "spoor.s3Secret" .root }}
secret_access_key_file = "/etc/spoor/secrets/s3/secret-access-key"
{{- end }}
allow_http = {{ $v.storage.s3.allowHttp }}
virtual_hosted_style = {{ $v.storage.s3.virtualHostedStyle }}
{{- if $v.tls.enabled }}

[tls]
cert_file = "/etc/spoor/tls/tls.crt"
key_file = "/etc/spoor/tls/tls.key"
ca_file = "/etc/spoor/tls/ca.crt"
{{- if and $v.tls.mutual (eq $role "coordinator") }}
client_ca_file = "/etc/spoor/tls/ca.crt"
{{- end }}
{{- end }}
{{- if eq $role "coordinator" }}

[coordinator]
initial_members = [
{{- range $i, $url := include "spoor.coordinatorUrls" .root | fromJsonArray }}
  {{ printf "%d@%s" (add $v.coordinator.nodeIdBase $i) $url | toJson }},
{{- end }}
]
{{- else }}

[catalog]
endpoint = {{ include "spoor.coordinatorUrls" .root | fromJsonArray | join "," | toJson }}
{{- end }}
{{- if eq $role "ingest" }}

[ingest]
http_auth = {{ $v.auth.ingestHttp | toJson }}

[ingest.kafka]
brokers = {{ $v.kafka.brokers | toJson }}
topics = {{ $v.kafka.topics | toJson }}
group_id = {{ $v.kafka.groupId | toJson }}
{{- end }}
{{- if eq $role "query" }}

[query]
auth = {{ $v.auth.query | toJson }}
flight_addr = {{ printf "0.0.0.0:%d" (int $v.ports.flight) | toJson }}
postgres_addr = {{ printf "0.0.0.0:%d" (int $v.ports.postgres) | toJson }}
{{- end }}
{{- with (index $v $role).extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{/*
The pod template of one role: (dict "root" $ "role" "worker").
node.id = nodeIdBase + the pod's ordinal (the suffix of its StatefulSet
name): stable across restarts (Kafka static membership, shard leases, Raft).
Kubernetes leaves $(...) it cannot resolve as a variable untouched, so the
shell sees the arithmetic as written.
*/}}
{{- define "spoor.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $role := .role -}}
{{- $r := index $v $role -}}
metadata:
  labels:
    {{- include "spoor.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
  annotations:
    checksum/config: {{ include "spoor.config" . | sha256sum }}
spec:
  serviceAccountName: {{ include "spoor.serviceAccountName" $root }}
  automountServiceAccountToken: false
  # Service links would add SPOOR_*_SERVICE_HOST variables, and spoor stops on
  # any SPOOR_* variable that names no config key.
  enableServiceLinks: false
  terminationGracePeriodSeconds: 60
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: spoor
      image: {{ include "spoor.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        - /bin/sh
        - -c
        - {{ printf "exec spoor %s --set \"node.id=$((%d + ${POD_NAME##*-}))\" \"$@\"" $role (int $r.nodeIdBase) | quote }}
        - spoor
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: SPOOR_CONFIG
          value: {{ printf "/etc/spoor/%s.toml" $role | quote }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $r.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ $v.ports.http }}
          protocol: TCP
        {{- if eq $role "coordinator" }}
        - name: grpc
          containerPort: {{ $v.ports.grpc }}
          protocol: TCP
        {{- end }}
        {{- if eq $role "query" }}
        - name: flight
          containerPort: {{ $v.ports.flight }}
          protocol: TCP
        - name: postgres
          containerPort: {{ $v.ports.postgres }}
          protocol: TCP
        {{- end }}
      # /health is the only health endpoint; a coordinator serves HTTP once
      # its group has a leader, hence the long start-up allowance.
      startupProbe:
        httpGet:
          path: /health
          port: http
          scheme: {{ include "spoor.scheme" $root | upper }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: {{ if eq $role "coordinator" }}36{{ else }}24{{ end }}
      livenessProbe:
        httpGet:
          path: /health
          port: http
          scheme: {{ include "spoor.scheme" $root | upper }}
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /health
          port: http
          scheme: {{ include "spoor.scheme" $root | upper }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 2
      resources:
        {{- toYaml $r.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/spoor/{{ $role }}.toml
          subPath: {{ $role }}.toml
          readOnly: true
        # Whole folders, no subPath: a rotated secret reaches the file, which
        # spoor re-reads every cluster.reload_interval_ms.
        - name: cluster-secret
          mountPath: /etc/spoor/secrets/cluster
          readOnly: true
        {{- if include "spoor.s3Secret" $root }}
        - name: s3-secret
          mountPath: /etc/spoor/secrets/s3
          readOnly: true
        {{- end }}
        {{- if $v.tls.enabled }}
        - name: tls
          mountPath: /etc/spoor/tls
          readOnly: true
        {{- end }}
        - name: data
          mountPath: /var/lib/spoor
        # DataFusion spills sorts and joins here.
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "spoor.fullname" $root }}-config
    - name: cluster-secret
      secret:
        secretName: {{ include "spoor.clusterSecretName" $root }}
        items:
          - key: cluster.secret
            path: cluster.secret
    {{- if include "spoor.s3Secret" $root }}
    - name: s3-secret
      secret:
        secretName: {{ include "spoor.s3SecretName" $root }}
        items:
          - key: secret-access-key
            path: secret-access-key
    {{- end }}
    {{- if $v.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ required "tls.existingSecret is required with tls.enabled" $v.tls.existingSecret }}
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if not (and (eq $role "coordinator") $v.coordinator.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
  {{- with $r.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $r.affinity }}
  affinity:
    {{- toYaml $r.affinity | nindent 4 }}
  {{- else }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "spoor.roleSelectorLabels" . | nindent 16 }}
  {{- end }}
{{- end -}}
