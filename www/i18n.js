// User-visible strings in English and Simplified Chinese, and the helpers that
// put them into the page. Elements carry their string key in `data-i18n` (and
// their parameters as JSON in `data-i18n-params`), so switching the language
// re-renders static labels and dynamic messages alike.

const STORAGE_KEY = 'prunechat.lang';
export const LANGUAGES = ['en', 'zh'];

// A value that is an object is a plural form table keyed by
// Intl.PluralRules categories ('one', 'other'); `count` selects the form.
const STRINGS = {
  en: {
    'app.title': 'prunechat',
    'app.tagline': 'A small language model, running in your browser',
    'lang.label': 'Language',

    'status.starting': 'Starting…',
    'status.downloading': 'Downloading model…',
    'status.loading': 'Loading model…',
    'status.ready': 'Ready',
    'status.generating': 'Generating…',
    'status.no_model': 'No model loaded',
    'status.broken': 'Engine stopped',

    'chat.empty_title': 'Chat with a model that never leaves this tab',
    'chat.empty_body': 'The model runs in WebAssembly on your CPU. Nothing you type is sent to a server.',
    'chat.role_user': 'You',
    'chat.role_assistant': 'Assistant',
    'chat.prompt_placeholder': 'Type a message…',
    'chat.prompt_label': 'Message',
    'chat.hint': 'Enter to send · Shift+Enter for a new line',
    'chat.send': 'Send',
    'chat.stop': 'Stop',
    'chat.new_chat': 'New chat',
    'chat.thinking': 'Reading the prompt…',
    'chat.reason.eos': '',
    'chat.reason.max_tokens': 'Reply cut off at the max new tokens limit.',
    'chat.reason.context_full': 'Reply cut off because the context window is full. Start a new chat to continue.',
    'chat.reason.stopped': 'Stopped.',
    'chat.reply_meta': '{tokens} tokens · {rate} tokens/s',
    'chat.dropped_turns': {
      one: '{count} earlier turn was dropped because the conversation no longer fits in the context window ({context} tokens).',
      other: '{count} earlier turns were dropped because the conversation no longer fits in the context window ({context} tokens).',
    },
    'chat.cleared': 'New chat started.',

    'model.heading': 'Model',
    'model.none': 'No model loaded',
    'model.open_file': 'Open a local .gguf file…',
    'model.max_context': 'Context length (tokens)',
    'model.max_context_help': 'Applies to the next model load.',
    'model.size': 'File size',
    'model.params': 'Parameters',
    'model.sparsity': 'Sparsity',
    'model.sparsity_help': 'Exactly zero weights in the decoder layers’ weight matrices',
    'model.layers': 'Layers',
    'model.quant': 'Tensor types',
    'model.context': 'Context',
    'model.template': 'Chat template',
    'model.template.gguf': 'from GGUF',
    'model.template.chatml-fallback': 'ChatML (fallback)',
    'model.threads': 'Threads',
    'model.threads_help': 'Threads that run the matrix multiplications. Add ?threads=N to the address to change it; it applies when the page loads.',
    'model.threads_fallback.not_isolated': '{count} ({requested} requested; the page is not cross-origin isolated)',
    'model.threads_fallback.no_shared_memory': '{count} ({requested} requested; this browser has no shared WebAssembly memory)',
    'model.threads_fallback.module_failed': '{count} ({requested} requested; pkg-threads/ could not be loaded)',
    'model.threads_fallback.pool_failed': '{count} ({requested} requested; the threads did not start)',
    'model.source.cache': 'Loaded from the browser cache.',
    'model.source.network': 'Downloaded and stored in the browser cache.',
    'model.source.network_uncached': 'Downloaded; storing it in the browser cache failed: {detail}',
    'model.source.file': 'Loaded from a local file.',
    'progress.download': 'Downloading {name}: {loaded} of {total}',
    'progress.download_unknown': 'Downloading {name}: {loaded}',
    'progress.load': 'Reading the model into WebAssembly memory…',

    'stats.heading': 'Performance',
    'stats.ttft': 'Time to first token',
    'stats.prefill': 'Prefill',
    'stats.decode': 'Decode',
    'stats.generated': 'Tokens generated',
    'stats.prompt': 'Prompt tokens',
    'stats.prompt_value': '{prompt} ({reused} reused)',
    'stats.load': 'Model load',
    'stats.kv_cache': 'KV cache',
    'stats.kv_cache_value': '{size} ({tokens} tokens)',
    'stats.memory': 'WebAssembly memory',
    'stats.tokens_per_s': '{value} tokens/s',

    'system.heading': 'System prompt',
    'system.placeholder': 'Leave empty to use the model’s default system prompt.',

    'sampling.heading': 'Sampling',
    'sampling.temperature': 'Temperature',
    'sampling.temperature_help': '0 picks the most likely token (greedy).',
    'sampling.top_k': 'Top-k',
    'sampling.top_k_help': '0 disables top-k.',
    'sampling.top_p': 'Top-p',
    'sampling.top_p_help': '1 disables nucleus sampling.',
    'sampling.repeat_penalty': 'Repetition penalty',
    'sampling.repeat_penalty_help': '1 disables the penalty.',
    'sampling.seed': 'Seed',
    'sampling.seed_placeholder': 'random',
    'sampling.seed_help': 'Empty picks a new random seed for every reply.',
    'sampling.max_new_tokens': 'Max new tokens',
    'sampling.reset': 'Reset to defaults',

    'error.heading': 'Something went wrong',
    'error.dismiss': 'Dismiss',
    'error.reload': 'Reload page',
    'error.empty_prompt': 'The message is empty. Type some text before sending.',
    'error.no_model': 'No model is loaded yet. Wait for the download to finish or open a local .gguf file.',
    'error.busy': 'Wait until the current reply has finished, or press Stop.',
    'error.loading': 'The model is still loading. Send the message once it is ready.',
    'error.not_gguf': '“{name}” is not a GGUF model file. Pick a file that ends in .gguf and was written by llama.cpp or a compatible tool.',
    'error.download_http': 'Downloading {url} failed with HTTP status {status}. Check that the file exists on the server, or open a local .gguf file.',
    'error.download_failed': 'Downloading {url} failed: {detail}. Check the connection, then reload the page to try again.',
    'error.wasm_missing': 'The WebAssembly engine (pkg/prunechat.js) could not be loaded. Build it with wasm-pack, then reload the page.',
    'error.wasm_trap': 'The engine crashed ({detail}). Reload the page to start it again; the model will load from the browser cache.',
    'error.engine_broken': 'The engine stopped after an earlier crash. Reload the page to start it again.',
    'error.worker_failed': 'The background worker failed: {detail}. Reload the page.',
    'error.file_read': 'Reading “{name}” failed: {detail}',
    'error.data_download': 'Downloading the data file {url} failed ({detail}). Run scripts/fetch-model.sh to fetch the dialogue corpus, or paste text instead.',
    'error.invalid_setting': '{field} must be a number between {min} and {max}.',
    'error.context.load': 'Loading the model failed: {detail}',
    'error.context.send': 'Starting the reply failed: {detail}',
    'error.context.generate': 'Generating the reply failed: {detail}',
    'error.context.reset': 'Starting a new chat failed: {detail}',
    'error.context.other': 'The engine reported an error: {detail}',
    'error.keep_current_model': 'The current model stays loaded.',

    'view.label': 'View',
    'view.chat': 'Chat',
    'view.compare': 'Compare',

    'compare.heading': 'Compare models',
    'compare.intro': 'Each model runs in its own worker. One prompt goes to every loaded model with the same sampling settings and seed; the first model is the reference for top-1 agreement.',
    'compare.manifest_loading': 'Reading the list of prepared models…',
    'compare.manifest_missing': 'No prepared models: reading {url} failed ({detail}). Run scripts/prepare-variants.py (make run does), or add local .gguf files.',
    'compare.manifest_loaded': {
      one: '{count} prepared model. Models in the browser cache are listed after it.',
      other: '{count} prepared models. Models in the browser cache are listed after them.',
    },
    'compare.choice_meta': '{method} · {sparsity} % sparse · {params} · {size}',
    'compare.choice_cached': 'In the browser cache',
    'compare.load': 'Load selected models',
    'compare.add_file': 'Add local .gguf files…',
    'compare.sequential': 'One model at a time (timings without contention)',
    'compare.prompt_placeholder': 'One prompt for every model…',
    'compare.hint': 'Sampling settings and seed come from the sidebar. Each prompt starts a new conversation.',
    'compare.send': 'Send to all',
    'compare.empty': 'No models loaded yet. Tick models above and press “Load selected models”, or add local files.',
    'compare.reference': 'Reference',
    'compare.remove': 'Remove this model',
    'compare.status.scoring': 'Scoring the reference reply…',
    'compare.status.evaluating': 'Computing perplexity…',
    'compare.status.failed': 'Not loaded',
    'compare.sparsity': 'Sparsity',
    'compare.sparsity_help': 'Decoder-layer weights that are zero or removed, relative to the reference model’s decoder layers',
    'compare.agreement': 'Top-1 agreement',
    'compare.agreement_help': 'Reply positions where this model’s most likely next token is the token the reference model generated, with the reference’s prompt and reply fed in',
    'compare.agreement_pending': 'scoring…',
    'compare.agreement_value': '{percent} % ({agree}/{scored})',
    'compare.agreement_failed': 'failed',
    'compare.agreement_no_reference': 'no reference reply',
    'compare.perplexity': 'Perplexity',
    'compare.perplexity_help': 'Perplexity on the held-out windows of the chat corpus listed in models/manifest.json; lower is better',
    'compare.reply_meta.eos': {
      one: '{tokens} token; the model ended the reply.',
      other: '{tokens} tokens; the model ended the reply.',
    },
    'compare.reply_meta.max_tokens': '{tokens} tokens; cut off at the max new tokens limit.',
    'compare.threads_shared': '{used} of {count} (shared: the models replied at once)',
    'compare.reply_meta.context_full': '{tokens} tokens; cut off because the context window is full.',
    'compare.reply_meta.stopped': '{tokens} tokens; stopped.',
    'compare.evaluate': 'Evaluate perplexity',
    'compare.eval_progress': 'Window {done} of {total}…',
    'compare.eval_done': '{windows} windows, {tokens} tokens scored in {time}.',
    'compare.eval_stopped': 'Stopped after {windows} windows ({tokens} tokens); the perplexity covers those only.',
    'compare.chart_decode': 'Decode speed of the last reply',
    'compare.chart_decode_empty': 'Send a prompt to measure decode speed.',
    'compare.chart_perplexity': 'Perplexity against sparsity',
    'compare.chart_perplexity_empty': 'Press “Evaluate perplexity” on a model to plot it.',
    'compare.chart_sparsity_axis': 'Sparsity (%)',
    'compare.chart_perplexity_axis': 'Perplexity',
    'compare.error.none_selected': 'No model is ticked. Tick at least one model, then press “Load selected models”.',
    'compare.error.busy': 'Wait until every model has finished, or press Stop.',
    'compare.error.no_models': 'No model is loaded. Load models from the list or add local .gguf files first.',
    'compare.error.no_eval_data': 'There is no held-out evaluation set: {url} lists none. Run scripts/prepare-variants.py to write it.',
    'compare.error.eval_data': 'Reading the evaluation set {url} failed: {detail}. Run scripts/prepare-variants.py to write it again.',
    'compare.error.load': 'Loading this model failed: {detail}',
    'compare.error.send': 'Starting the reply failed: {detail}',
    'compare.error.generate': 'Generating the reply failed: {detail}',
    'compare.error.score': 'Scoring the reference reply failed: {detail}',
    'compare.error.evaluate': 'Computing perplexity failed: {detail}',
    'compare.error.crashed': 'This model’s worker stopped ({detail}). Press “Reload this model” to start it again; the other models keep running.',
    'compare.reload': 'Reload this model',
    'view.lab': 'Prune & fine-tune',
    'compare.choice_made': 'made on this page',
    'lab.heading': 'Prune and fine-tune in this tab',
    'lab.intro': 'Each job runs in a worker of its own, so chats and comparisons keep working. Results join the compare list and can be saved as .gguf files that the CLI and llama.cpp load.',
    'lab.source': 'Model to start from',
    'lab.add_file': 'Add a local .gguf file…',
    'lab.manifest_missing': 'The prepared models are not listed ({detail}); add a local .gguf file, or run scripts/prepare-variants.py.',
    'lab.results': 'Results',
    'lab.results_empty': 'Pruned and fine-tuned models appear here.',
    'lab.save': 'Save .gguf',
    'lab.compare': 'Compare now',
    'lab.use': 'Start the next job from it',
    'lab.result.pruned': '{method}: {percent} % of decoder weights are zero · {params} parameters · {size} · {time}',
    'lab.result.structured': '{method}: {percent} % of parameters kept · {params} parameters · {size} · {time}',
    'lab.result.finetuned_full': '{steps} steps, all weights · held-out loss {before} → {after} · {size} · {time}',
    'lab.result.finetuned_lora': '{steps} steps, LoRA adapters merged · held-out loss {before} → {after} · {size} · {time}',
    'lab.error.no_dialogue': 'There is no bundled dialogue set: models/manifest.json lists none. Paste text instead, or run scripts/prepare-variants.py.',
    'lab.error.empty_text': 'The pasted text is empty. Paste some text, or choose the bundled dialogues.',
    'lab.error.prune': 'Pruning failed: {detail}',
    'lab.error.finetune': 'Fine-tuning failed: {detail}',
    'job.data': 'Calibration text',
    'job.data.bundled': 'Bundled English dialogues',
    'job.data.pasted': 'Pasted below',
    'job.cancel': 'Cancel',
    'job.status.starting': 'Starting the worker…',
    'job.status.download': 'Reading the model: {loaded} of {total}',
    'job.status.prepare_model': 'Reading the model into the engine…',
    'job.status.prepare_calibration': 'Tokenizing the data…',
    'job.status.export': 'Writing the GGUF file…',
    'job.status.cancelled': 'Cancelled. Nothing was saved; loaded models keep working.',
    'job.status.failed': 'Stopped with an error (see above).',
    'prune.heading': 'Prune',
    'prune.method': 'Method',
    'prune.method.wanda': 'Wanda (weights)',
    'prune.method.magnitude': 'Magnitude (weights)',
    'prune.method.sparsegpt': 'SparseGPT (weights)',
    'prune.method.ffn': 'FFN neurons (structured)',
    'prune.method.heads': 'Attention heads (structured)',
    'prune.method.layers': 'Whole layers (structured)',
    'prune.pattern': 'Pattern',
    'prune.pattern.unstructured': 'Unstructured',
    'prune.sparsity': 'Weights set to zero (%)',
    'prune.removed': 'Parameters removed (%)',
    'prune.samples': 'Calibration samples',
    'prune.text_placeholder': 'Paste text, chat JSONL or chatterbot YAML…',
    'prune.start': 'Prune',
    'prune.status.layers': 'Layer {done} of {total} pruned',
    'prune.status.scoring': 'Step {step}: scoring, {done} of {total}',
    'prune.status.step': 'Step {step} done: {params} parameters, {size}',
    'prune.status.done': 'Done in {time}: {params} parameters, {size}.',
    'finetune.heading': 'Fine-tune',
    'finetune.mode': 'Trained weights',
    'finetune.mode.lora': 'LoRA adapters',
    'finetune.mode.full': 'All weights (small models)',
    'finetune.rank': 'LoRA rank',
    'finetune.steps': 'Steps',
    'finetune.lr': 'Learning rate',
    'finetune.batch': 'Batch size',
    'finetune.data': 'Training data',
    'finetune.text_placeholder': 'Q: What is pruning?\nA: Removing weights a model does not need.\n\nQ: …',
    'finetune.keep_zeros': 'Keep zero weights at zero, so a pruned model keeps its sparsity (LoRA then needs about 3 GiB)',
    'lab.error.out_of_memory': 'The job ran out of WebAssembly memory, which ends at 4 GiB. Lower the batch size, or untick “Keep zero weights at zero” for a dense model. Loaded models are not affected.',
    'finetune.start': 'Fine-tune',
    'finetune.finish': 'Stop and keep',
    'finetune.status.start': 'Training on {samples} samples, {params} trained values…',
    'finetune.status.step': 'Step {step} of {total}: loss {loss}, {rate} tokens/s',
    'finetune.status.finishing': 'Stopping after this step and writing the model…',
    'finetune.status.done': 'Done in {time}: held-out loss {before} → {after}.',
    'finetune.status.done_early': 'Stopped after {steps} steps in {time}; the model keeps what it learned.',
    'finetune.chart': 'Training loss',
    'finetune.chart_train': 'training',
    'finetune.chart_eval': 'held-out',
    'finetune.chart_step': 'Step',
    'finetune.chart_loss': 'Loss (nats per token)',
    'finetune.chart_empty': 'The loss appears here while the model trains.',
  },

  zh: {
    'app.title': 'prunechat',
    'app.tagline': '在浏览器中运行的小型语言模型',
    'lang.label': '语言',

    'status.starting': '正在启动…',
    'status.downloading': '正在下载模型…',
    'status.loading': '正在加载模型…',
    'status.ready': '就绪',
    'status.generating': '正在生成…',
    'status.no_model': '未加载模型',
    'status.broken': '引擎已停止',

    'chat.empty_title': '与一个不会离开此标签页的模型对话',
    'chat.empty_body': '模型以 WebAssembly 形式在你的 CPU 上运行。你输入的内容不会发送到任何服务器。',
    'chat.role_user': '你',
    'chat.role_assistant': '助手',
    'chat.prompt_placeholder': '输入消息…',
    'chat.prompt_label': '消息',
    'chat.hint': 'Enter 发送 · Shift+Enter 换行',
    'chat.send': '发送',
    'chat.stop': '停止',
    'chat.new_chat': '新对话',
    'chat.thinking': '正在读取提示词…',
    'chat.reason.eos': '',
    'chat.reason.max_tokens': '回复已达到最大新 token 数，已截断。',
    'chat.reason.context_full': '上下文窗口已满，回复已截断。请开始新对话后继续。',
    'chat.reason.stopped': '已停止。',
    'chat.reply_meta': '{tokens} 个 token · 每秒 {rate} 个 token',
    'chat.dropped_turns': {
      other: '对话超出了上下文窗口（{context} 个 token），因此丢弃了较早的 {count} 轮对话。',
    },
    'chat.cleared': '已开始新对话。',

    'model.heading': '模型',
    'model.none': '未加载模型',
    'model.open_file': '打开本地 .gguf 文件…',
    'model.max_context': '上下文长度（token）',
    'model.max_context_help': '在下次加载模型时生效。',
    'model.size': '文件大小',
    'model.params': '参数量',
    'model.sparsity': '稀疏度',
    'model.sparsity_help': '解码器各层权重矩阵中恰为零的权重所占比例',
    'model.layers': '层数',
    'model.quant': '张量类型',
    'model.context': '上下文',
    'model.template': '对话模板',
    'model.template.gguf': '来自 GGUF',
    'model.template.chatml-fallback': 'ChatML（备用）',
    'model.threads': '线程数',
    'model.threads_help': '执行矩阵乘法的线程数。在地址后加上 ?threads=N 可以修改，页面加载时生效。',
    'model.threads_fallback.not_isolated': '{count}（请求 {requested} 个；页面未启用跨源隔离）',
    'model.threads_fallback.no_shared_memory': '{count}（请求 {requested} 个；此浏览器不支持共享 WebAssembly 内存）',
    'model.threads_fallback.module_failed': '{count}（请求 {requested} 个；无法加载 pkg-threads/）',
    'model.threads_fallback.pool_failed': '{count}（请求 {requested} 个；线程未能启动）',
    'model.source.cache': '已从浏览器缓存加载。',
    'model.source.network': '已下载并存入浏览器缓存。',
    'model.source.network_uncached': '已下载，但存入浏览器缓存失败：{detail}',
    'model.source.file': '已从本地文件加载。',
    'progress.download': '正在下载 {name}：{loaded} / {total}',
    'progress.download_unknown': '正在下载 {name}：{loaded}',
    'progress.load': '正在将模型读入 WebAssembly 内存…',

    'stats.heading': '性能',
    'stats.ttft': '首 token 延迟',
    'stats.prefill': '预填充',
    'stats.decode': '解码',
    'stats.generated': '生成的 token',
    'stats.prompt': '提示词 token',
    'stats.prompt_value': '{prompt}（复用 {reused}）',
    'stats.load': '模型加载',
    'stats.kv_cache': 'KV 缓存',
    'stats.kv_cache_value': '{size}（{tokens} 个 token）',
    'stats.memory': 'WebAssembly 内存',
    'stats.tokens_per_s': '每秒 {value} 个 token',

    'system.heading': '系统提示词',
    'system.placeholder': '留空则使用模型默认的系统提示词。',

    'sampling.heading': '采样',
    'sampling.temperature': '温度',
    'sampling.temperature_help': '0 表示总是选择概率最高的 token（贪心）。',
    'sampling.top_k': 'Top-k',
    'sampling.top_k_help': '0 表示不使用 top-k。',
    'sampling.top_p': 'Top-p',
    'sampling.top_p_help': '1 表示不使用核采样。',
    'sampling.repeat_penalty': '重复惩罚',
    'sampling.repeat_penalty_help': '1 表示不惩罚重复。',
    'sampling.seed': '随机种子',
    'sampling.seed_placeholder': '随机',
    'sampling.seed_help': '留空则每次回复使用新的随机种子。',
    'sampling.max_new_tokens': '最大新 token 数',
    'sampling.reset': '恢复默认值',

    'error.heading': '出错了',
    'error.dismiss': '关闭',
    'error.reload': '重新加载页面',
    'error.empty_prompt': '消息为空。请先输入文字再发送。',
    'error.no_model': '尚未加载模型。请等待下载完成，或打开本地 .gguf 文件。',
    'error.busy': '请等待当前回复完成，或按“停止”。',
    'error.loading': '模型仍在加载，请在加载完成后再发送。',
    'error.not_gguf': '“{name}”不是 GGUF 模型文件。请选择由 llama.cpp 或兼容工具生成的 .gguf 文件。',
    'error.download_http': '下载 {url} 失败，HTTP 状态码 {status}。请检查服务器上是否有该文件，或打开本地 .gguf 文件。',
    'error.download_failed': '下载 {url} 失败：{detail}。请检查网络连接，然后重新加载页面重试。',
    'error.wasm_missing': '无法加载 WebAssembly 引擎（pkg/prunechat.js）。请先用 wasm-pack 构建，然后重新加载页面。',
    'error.wasm_trap': '引擎崩溃了（{detail}）。请重新加载页面以重启引擎；模型会从浏览器缓存加载。',
    'error.engine_broken': '引擎在之前的崩溃后已停止。请重新加载页面以重启引擎。',
    'error.worker_failed': '后台 worker 出错：{detail}。请重新加载页面。',
    'error.file_read': '读取“{name}”失败：{detail}',
    'error.data_download': '下载数据文件 {url} 失败（{detail}）。请运行 scripts/fetch-model.sh 获取对话语料，或改为粘贴文本。',
    'error.invalid_setting': '{field} 必须是 {min} 到 {max} 之间的数字。',
    'error.context.load': '加载模型失败：{detail}',
    'error.context.send': '开始生成回复失败：{detail}',
    'error.context.generate': '生成回复时出错：{detail}',
    'error.context.reset': '开始新对话失败：{detail}',
    'error.context.other': '引擎报告了错误：{detail}',
    'error.keep_current_model': '当前模型仍然可用。',

    'view.label': '视图',
    'view.chat': '对话',
    'view.compare': '对比',

    'compare.heading': '对比模型',
    'compare.intro': '每个模型在各自的 worker 中运行。同一条提示词以相同的采样设置和随机种子发送给所有已加载的模型；第一个模型是计算 top-1 一致率的参考模型。',
    'compare.manifest_loading': '正在读取预先准备的模型列表…',
    'compare.manifest_missing': '没有预先准备的模型：读取 {url} 失败（{detail}）。请运行 scripts/prepare-variants.py（make run 会运行它），或添加本地 .gguf 文件。',
    'compare.manifest_loaded': {
      other: '共 {count} 个预先准备的模型。浏览器缓存中的模型列在其后。',
    },
    'compare.choice_meta': '{method} · 稀疏度 {sparsity} % · {params} · {size}',
    'compare.choice_cached': '在浏览器缓存中',
    'compare.load': '加载所选模型',
    'compare.add_file': '添加本地 .gguf 文件…',
    'compare.sequential': '逐个运行模型（计时不受相互干扰）',
    'compare.prompt_placeholder': '输入发给所有模型的提示词…',
    'compare.hint': '采样设置和随机种子取自侧栏。每条提示词都开始一段新对话。',
    'compare.send': '发送给全部',
    'compare.empty': '尚未加载模型。请在上方勾选模型并点击“加载所选模型”，或添加本地文件。',
    'compare.reference': '参考模型',
    'compare.remove': '移除此模型',
    'compare.status.scoring': '正在为参考回复打分…',
    'compare.status.evaluating': '正在计算困惑度…',
    'compare.status.failed': '未加载',
    'compare.sparsity': '稀疏度',
    'compare.sparsity_help': '解码器各层中为零或已移除的权重，相对于参考模型解码器各层的权重数',
    'compare.agreement': 'Top-1 一致率',
    'compare.agreement_help': '输入参考模型的提示词和回复后，本模型最可能的下一个 token 与参考模型生成的 token 相同的位置所占比例',
    'compare.agreement_pending': '正在打分…',
    'compare.agreement_value': '{percent} %（{agree}/{scored}）',
    'compare.agreement_failed': '失败',
    'compare.agreement_no_reference': '没有参考回复',
    'compare.perplexity': '困惑度',
    'compare.perplexity_help': '在 models/manifest.json 所列对话语料留出窗口上的困惑度；越低越好',
    'compare.reply_meta.eos': {
      other: '{tokens} 个 token；模型结束了回复。',
    },
    'compare.reply_meta.max_tokens': '{tokens} 个 token；达到最大新 token 数，已截断。',
    'compare.threads_shared': '{count} 个中用了 {used} 个（多个模型同时回复）',
    'compare.reply_meta.context_full': '{tokens} 个 token；上下文窗口已满，已截断。',
    'compare.reply_meta.stopped': '{tokens} 个 token；已停止。',
    'compare.evaluate': '评估困惑度',
    'compare.eval_progress': '第 {done} / {total} 个窗口…',
    'compare.eval_done': '{windows} 个窗口，{tokens} 个 token，用时 {time}。',
    'compare.eval_stopped': '在 {windows} 个窗口（{tokens} 个 token）后停止；困惑度只包含这些窗口。',
    'compare.chart_decode': '上一条回复的解码速度',
    'compare.chart_decode_empty': '发送提示词以测量解码速度。',
    'compare.chart_perplexity': '困惑度与稀疏度',
    'compare.chart_perplexity_empty': '点击模型的“评估困惑度”后在此绘制。',
    'compare.chart_sparsity_axis': '稀疏度（%）',
    'compare.chart_perplexity_axis': '困惑度',
    'compare.error.none_selected': '没有勾选任何模型。请至少勾选一个模型，然后点击“加载所选模型”。',
    'compare.error.busy': '请等待所有模型完成，或按“停止”。',
    'compare.error.no_models': '尚未加载模型。请先从列表加载模型或添加本地 .gguf 文件。',
    'compare.error.no_eval_data': '没有留出评估集：{url} 中没有列出。请运行 scripts/prepare-variants.py 生成它。',
    'compare.error.eval_data': '读取评估集 {url} 失败：{detail}。请运行 scripts/prepare-variants.py 重新生成它。',
    'compare.error.load': '加载此模型失败：{detail}',
    'compare.error.send': '开始生成回复失败：{detail}',
    'compare.error.generate': '生成回复时出错：{detail}',
    'compare.error.score': '为参考回复打分失败：{detail}',
    'compare.error.evaluate': '计算困惑度失败：{detail}',
    'compare.error.crashed': '该模型的 worker 已停止（{detail}）。点击“重新加载此模型”重新启动；其他模型照常运行。',
    'compare.reload': '重新加载此模型',
    'view.lab': '剪枝与微调',
    'compare.choice_made': '在本页生成',
    'lab.heading': '在本页剪枝和微调',
    'lab.intro': '每个任务在独立的 worker 中运行，聊天和对比不受影响。结果会加入对比列表，并可保存为 CLI 和 llama.cpp 都能加载的 .gguf 文件。',
    'lab.source': '起始模型',
    'lab.add_file': '添加本地 .gguf 文件…',
    'lab.manifest_missing': '未列出预置模型（{detail}）；请添加本地 .gguf 文件，或运行 scripts/prepare-variants.py。',
    'lab.results': '结果',
    'lab.results_empty': '剪枝和微调得到的模型会显示在这里。',
    'lab.save': '保存 .gguf',
    'lab.compare': '立即对比',
    'lab.use': '以它为起点继续',
    'lab.result.pruned': '{method}：解码层权重 {percent} % 为零 · {params} 参数 · {size} · {time}',
    'lab.result.structured': '{method}：保留 {percent} % 参数 · {params} 参数 · {size} · {time}',
    'lab.result.finetuned_full': '{steps} 步，全部权重 · 留出集损失 {before} → {after} · {size} · {time}',
    'lab.result.finetuned_lora': '{steps} 步，LoRA 适配器已合并 · 留出集损失 {before} → {after} · {size} · {time}',
    'lab.error.no_dialogue': '没有内置对话数据：models/manifest.json 未列出。请改为粘贴文本，或运行 scripts/prepare-variants.py。',
    'lab.error.empty_text': '粘贴的文本为空。请粘贴文本，或选择内置对话。',
    'lab.error.prune': '剪枝失败：{detail}',
    'lab.error.finetune': '微调失败：{detail}',
    'job.data': '校准文本',
    'job.data.bundled': '内置英文对话',
    'job.data.pasted': '下方粘贴的文本',
    'job.cancel': '取消',
    'job.status.starting': '正在启动 worker…',
    'job.status.download': '正在读取模型：{loaded} / {total}',
    'job.status.prepare_model': '正在把模型读入引擎…',
    'job.status.prepare_calibration': '正在分词…',
    'job.status.export': '正在写入 GGUF 文件…',
    'job.status.cancelled': '已取消。没有保存任何内容；已加载的模型照常工作。',
    'job.status.failed': '因错误停止（见上方）。',
    'prune.heading': '剪枝',
    'prune.method': '方法',
    'prune.method.wanda': 'Wanda（权重）',
    'prune.method.magnitude': '幅值（权重）',
    'prune.method.sparsegpt': 'SparseGPT（权重）',
    'prune.method.ffn': 'FFN 神经元（结构化）',
    'prune.method.heads': '注意力头（结构化）',
    'prune.method.layers': '整层（结构化）',
    'prune.pattern': '模式',
    'prune.pattern.unstructured': '非结构化',
    'prune.sparsity': '置零的权重（%）',
    'prune.removed': '移除的参数（%）',
    'prune.samples': '校准样本数',
    'prune.text_placeholder': '粘贴文本、聊天 JSONL 或 chatterbot YAML…',
    'prune.start': '剪枝',
    'prune.status.layers': '已剪枝 {done} / {total} 层',
    'prune.status.scoring': '第 {step} 步：评分 {done} / {total}',
    'prune.status.step': '第 {step} 步完成：{params} 参数，{size}',
    'prune.status.done': '用时 {time} 完成：{params} 参数，{size}。',
    'finetune.heading': '微调',
    'finetune.mode': '训练的权重',
    'finetune.mode.lora': 'LoRA 适配器',
    'finetune.mode.full': '全部权重（小模型）',
    'finetune.rank': 'LoRA 秩',
    'finetune.steps': '步数',
    'finetune.lr': '学习率',
    'finetune.batch': '批大小',
    'finetune.data': '训练数据',
    'finetune.text_placeholder': '问：什么是剪枝？\n答：去掉模型不需要的权重。\n\n问：…',
    'finetune.keep_zeros': '为零的权重保持为零，剪枝后的模型保持其稀疏度（此时 LoRA 约需 3 GiB）',
    'lab.error.out_of_memory': '任务耗尽了 WebAssembly 内存（上限 4 GiB）。请减小批大小，或对稠密模型取消勾选“为零的权重保持为零”。已加载的模型不受影响。',
    'finetune.start': '微调',
    'finetune.finish': '停止并保留',
    'finetune.status.start': '在 {samples} 个样本上训练，训练 {params} 个值…',
    'finetune.status.step': '第 {step} / {total} 步：损失 {loss}，{rate} token/秒',
    'finetune.status.finishing': '本步结束后停止并写出模型…',
    'finetune.status.done': '用时 {time} 完成：留出集损失 {before} → {after}。',
    'finetune.status.done_early': '训练 {steps} 步后停止，用时 {time}；模型保留已学到的内容。',
    'finetune.chart': '训练损失',
    'finetune.chart_train': '训练',
    'finetune.chart_eval': '留出集',
    'finetune.chart_step': '步',
    'finetune.chart_loss': '损失（nats/token）',
    'finetune.chart_empty': '训练时损失曲线显示在这里。',
  },
};

// Worker error codes (docs/worker-protocol.md) that have their own sentence, `error.CODE`.
export const ERROR_CODES = new Set([
  'not_gguf',
  'download_http',
  'download_failed',
  'wasm_missing',
  'wasm_trap',
  'engine_broken',
  'empty_prompt',
  'no_model',
  'data_download',
]);

let currentLanguage = detectLanguage();

function detectLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // localStorage throws when storage is blocked; fall back to the browser language.
  }
  if (LANGUAGES.includes(stored)) {
    return stored;
  }
  const preferred = (navigator.languages ?? [navigator.language]).join(',').toLowerCase();
  return preferred.startsWith('zh') ? 'zh' : 'en';
}

export function getLanguage() {
  return currentLanguage;
}

/** Formats a number for the current language, with at most `digits` decimals. */
export function formatNumber(value, digits = 0) {
  return new Intl.NumberFormat(currentLanguage === 'zh' ? 'zh-CN' : 'en', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  }).format(value);
}

/** Formats a byte count with binary units (KiB, MiB, GiB). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) {
    return '—';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${formatNumber(value, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Looks up `key` in the current language (English as fallback) and fills in `{name}` parameters. */
export function t(key, params = {}) {
  let entry = STRINGS[currentLanguage][key] ?? STRINGS.en[key];
  if (entry === undefined) {
    console.warn(`prunechat i18n: missing string ${key}`);
    return key;
  }
  if (typeof entry === 'object') {
    const rules = new Intl.PluralRules(currentLanguage === 'zh' ? 'zh-CN' : 'en');
    entry = entry[rules.select(params.count ?? 0)] ?? entry.other;
  }
  return entry.replace(/\{(\w+)\}/g, (match, name) =>
    Object.hasOwn(params, name) ? String(params[name]) : match,
  );
}

/**
 * Sets an element's text to a translated string and records the key and
 * parameters on it, so that a language switch re-renders it.
 */
export function setText(element, key, params = {}) {
  element.dataset.i18n = key;
  if (Object.keys(params).length > 0) {
    element.dataset.i18nParams = JSON.stringify(params);
  } else {
    delete element.dataset.i18nParams;
  }
  element.textContent = t(key, params);
}

/**
 * Shows a translated message in `element` (a hidden-by-default alert) and
 * records its key in `data-key`, where tests and callers read it.
 */
export function showMessage(element, key, params = {}) {
  setText(element, key, params);
  element.dataset.key = key;
  element.hidden = false;
}

/** Hides and empties a message that showMessage filled. */
export function hideMessage(element) {
  element.hidden = true;
  element.replaceChildren();
  delete element.dataset.i18n;
  delete element.dataset.i18nParams;
  delete element.dataset.key;
}

/**
 * Re-renders every translatable element under `root`: text from `data-i18n`,
 * and the attributes named by `data-i18n-placeholder`, `data-i18n-title` and
 * `data-i18n-aria-label`.
 */
export function applyTranslations(root = document) {
  for (const element of root.querySelectorAll('[data-i18n]')) {
    const params = element.dataset.i18nParams ? JSON.parse(element.dataset.i18nParams) : {};
    element.textContent = t(element.dataset.i18n, params);
  }
  const attributes = [
    ['i18nPlaceholder', 'placeholder'],
    ['i18nTitle', 'title'],
    ['i18nAriaLabel', 'aria-label'],
  ];
  for (const [datasetKey, attribute] of attributes) {
    const selector = `[data-${datasetKey.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`;
    for (const element of root.querySelectorAll(selector)) {
      element.setAttribute(attribute, t(element.dataset[datasetKey]));
    }
  }
  document.documentElement.lang = currentLanguage === 'zh' ? 'zh-CN' : 'en';
  document.title = `${t('app.title')} · ${t('app.tagline')}`;
}

/** Switches the language, stores the choice in localStorage and re-renders the page. */
export function setLanguage(language) {
  if (!LANGUAGES.includes(language)) {
    throw new Error(`Unsupported language "${language}"; expected one of ${LANGUAGES.join(', ')}.`);
  }
  currentLanguage = language;
  try {
    localStorage.setItem(STORAGE_KEY, language);
  } catch {
    // Storage blocked: the switch still applies to this page view.
  }
  applyTranslations();
  document.dispatchEvent(new CustomEvent('languagechange', { detail: { language } }));
}

/** Returns every key of a language table, for the check that both languages are complete. */
export function stringKeys(language) {
  return Object.keys(STRINGS[language]);
}
