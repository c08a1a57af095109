"""中文（简体）自检报告文本。键和 {占位符} 必须与 en.py 一致（有测试检查）。"""

from __future__ import annotations

UI: dict[str, str] = {
    "title": "宽带线路自检",
    "verdict_healthy": "您的线路正常。",
    "verdict_healthy_sub": "所有检测均已通过，无需处理。",
    "verdict_problems": "发现 {count} 个问题。",
    "verdict_problems_sub": "下面逐条说明问题的含义和处理办法。",
    "verdict_problems_nofinding_sub": "部分检测未通过，详见下表。",
    "verdict_unknown": "无法判断。",
    "verdict_unknown_sub": "没有任何检测能测量线路。请检查代理程序的设置后重新运行。",
    "sentence_gap": "",
    "colon": "：",
    "list_sep": "；",
    "in_room": "{where}（{room}）",
    "where": "故障位置",
    "what_to_do": "处理办法",
    "findings": "发现的问题",
    "checks": "检测项目",
    "col_check": "项目",
    "col_target": "对象",
    "col_status": "结果",
    "col_details": "详情",
    "line": "线路",
    "site": "站点",
    "agent": "代理",
    "time": "检测时间",
    "trigger": "检测原因",
    "result_id": "结果编号",
    "version": "代理版本",
    "clock": "代理时钟",
    "clock_synced": "已同步",
    "clock_unsynced": "未同步（时间可能不准）",
    "clock_unknown": "未知",
    "severity_critical": "严重",
    "severity_warning": "警告",
    "progress_checking": "正在检测线路",
    "progress_waiting": "等待代理正在进行的检测结束",
    "progress_done": "完成",
    "saved_report": "报告已保存到 {path}",
    "footer": "由 linecheck 生成。如问题持续，请将本报告交给运营商客服或上门技术人员。",
    "unknown_advice": "请将本报告出示给运营商客服；技术细节见下表。",
}

STATUS: dict[str, str] = {
    "ok": "正常", "degraded": "降级", "failed": "失败", "error": "无法运行", "skipped": "已跳过",
}

TRIGGER: dict[str, str] = {
    "manual": "手动检测",
    "schedule": "定时检测",
    "resume_after_idle": "闲置 {days} 天后恢复使用的首次检测",
    "idle_watchdog": "办公室无人期间的每日巡检（已静默 {days} 天）",
    "remote": "运营商远程发起的检测",
    "retest": "运营商要求的复测",
}

WHERE: dict[str, str] = {
    "wan": "运营商线路（WAN）",
    "cpe": "网关的 WAN 口或网线",
    "lan": "办公室内网（LAN）",
    "wifi": "WiFi",
    "dns": "域名解析（DNS）",
    "service": "运营商业务（账户）",
    "agent": "linecheck 代理",
}

CHECKS: dict[str, str] = {
    "link": "WAN 链路",
    "ping": "Ping（丢包、时延）",
    "udp_latency": "UDP 时延（STAMP）",
    "dns": "域名解析",
    "gateway": "网关",
    "pmtu": "路径 MTU",
    "traceroute": "路由跟踪",
    "ipv6": "IPv6",
    "http": "网页访问（HTTP）",
    "service_state": "业务状态",
    "wifi": "WiFi",
    "wifi_throughput": "房间测速",
    "throughput": "测速",
    "agent": "linecheck 代理程序",
}

FINDINGS: dict[str, tuple[str, str, str]] = {
    "line_down": (
        "线路中断：{interface} 没有链路。",
        "线路中断：网关无法连接互联网。",
        "请检查运营商的入户线和光猫（ONT）是否插好、指示灯是否正常；如都正常，请致电运营商报障。",
    ),
    "target_unreachable": (
        "{target} 完全没有响应。",
        "某个测试目标完全没有响应。",
        "如果网页也打不开，说明线路已断，请向运营商报障。",
    ),
    "packet_loss": (
        "发往 {target} 的测试包有 {loss_pct}% 丢失。",
        "部分测试包在传输中丢失。",
        "通话和视频会断断续续。如持续一小时以上，请携本报告向运营商报障。",
    ),
    "high_latency": (
        "到 {target} 的平均往返时延为 {rtt_avg_ms} 毫秒，偏慢。",
        "线路响应慢（时延高）。",
        "网页打开会变慢。如果办公室里没有人在大量下载，请向运营商反映。",
    ),
    "high_jitter": (
        "到 {target} 的时延在相邻数据包之间相差 {jitter_ms} 毫秒。",
        "线路时延波动大（抖动）。",
        "语音和视频通话会卡顿。如持续存在，请向运营商反映。",
    ),
    "dns_failure": (
        "域名服务器 {resolver} 无法解析 {name}（{error}）。",
        "域名解析（DNS）失败：网址无法解析。",
        "可在网关设置中换用其他 DNS 服务器；如运营商的 DNS 持续失败，请向运营商反映。",
    ),
    "wan_link_degraded": (
        "网关的 WAN 口只跑在 {wan_speed_mbps} Mbit/s：在网线或端口修好之前，您购买的 {plan_down_mbps} Mbit/s "
        "带宽无法到达。",
        "网关的 WAN 口或网线有故障（端口速率低、半双工或有错包）。",
        "请更换光猫与网关之间的网线（超五类或以上）并检查端口；这是本地设备问题，不是运营商线路问题。",
    ),
    "gateway_unreachable": (
        "下一跳路由器（{gateway}）没有响应。",
        "运营商的第一跳路由器没有响应。",
        "请将光猫和网关各重启一次；如仍然失败，请向运营商报障。",
    ),
    "pmtu_blackhole": (
        "发往 {target} 的大包会丢失（路径 MTU {path_mtu_bytes} 字节）：大文件下载和部分网站会卡住。",
        "大数据包在途中丢失：大文件下载和部分网站会卡住。",
        "请运营商检查线路的 MTU（常见于 PPPoE）；临时可将网关 MTU 调到 1492。",
    ),
    "pmtu_reduced": (
        "到 {target} 的路径只能通过 {path_mtu_bytes} 字节的包（端口设置为 {interface_mtu_bytes}）。",
        "线路能通过的包比网关端口设置的小。",
        "通常无害（例如 PPPoE）。如上传偏慢，请把网关 MTU 调成一致。",
    ),
    "ipv6_unavailable": (
        "此线路的 IPv6 不可用（缺少：{missing}）。",
        "此线路的 IPv6 不可用。",
        "请运营商为线路开通 IPv6，或检查网关是否已启用 IPv6。",
    ),
    "http_failure": (
        "网页 {url} 无法打开。",
        "某个测试网页无法打开。",
        "如果其他网站能打开，问题在该网站；否则请向运营商反映。",
    ),
    "service_suspended": (
        "运营商已暂停服务（{mode}）：网页访问被引导到运营商页面。",
        "运营商已暂停服务：网页访问被引导到运营商页面。",
        "请联系运营商政企客服核实账户情况（欠费、合同、停机）。",
    ),
    "wifi_weak": (
        "{room} 的 WiFi 信号弱（{signal_dbm} dBm）。",
        "设备所在位置的 WiFi 信号弱。",
        "请让设备或无线接入点靠近一些，或增加接入点（FTTR 可覆盖每个房间）。",
    ),
    "wifi_low_rate": (
        "{station} 的 WiFi 连接速率低（{tx_bitrate_mbps} Mbit/s），但信号良好。",
        "某台设备的 WiFi 连接速率低，但信号良好。",
        "请使用 5 GHz 网络和较新的设备或网卡；旧的 WiFi 标准会限制速度。",
    ),
    "wifi_channel_busy": (
        "WiFi 信道 {channel_num} 有 {channel_busy_pct}% 的时间被占用。",
        "WiFi 信道拥挤。",
        "请在接入点中选择较空闲的信道（或设为自动选择）。",
    ),
    "wifi_interference": (
        "附近的 WiFi 网络对本网络造成干扰。",
        "附近的 WiFi 网络对本网络造成干扰。",
        "请换到较空闲的信道，最好使用 5 GHz。",
    ),
    "wifi_not_connected": (
        "网关的 WiFi 接口 {interface} 未连接。",
        "网关的 WiFi 客户端未连接。",
        "请检查网关上配置的 WiFi 名称和密码。",
    ),
    "wifi_throughput_low": (
        "{room} 的 WiFi 测速偏慢，但无线信号看起来正常。",
        "某个房间的 WiFi 测速偏慢，但无线信号看起来正常。",
        "可能是设备本身的限制：请在同一位置换一台设备再试。",
    ),
    "lan_throughput_low": (
        "{room} 通过办公室内网的测速偏慢。",
        "某个房间通过办公室内网的测速偏慢。",
        "请检查该房间到网关之间的网线和交换机。",
    ),
    "throughput_below_plan": (
        "线路实测 {measured_mbps} Mbit/s，低于您购买的 {plan_mbps} Mbit/s。",
        "线路速度低于您购买的套餐。",
        "请在办公室空闲时再测一次；如仍偏低，请将本报告交给运营商：承诺的速率没有兑现。",
    ),
    "spool_results_lost": (
        "代理的结果存储已损坏：此前测得的 {lost_count} 条结果无法读取，已丢失。",
        "此网关的部分早期结果已丢失（存储损坏）。",
        "线路本身无需处理。如再次发生，网关的闪存可能有故障，请检查或更换。",
    ),
}
