// Chat message list. All model and user text goes in through textContent or
// Text nodes, never innerHTML, so a reply that contains markup shows as text.

import { formatNumber, setText, t } from './i18n.js';

// Keep following the newest text only while the view is this close (in CSS
// pixels) to the bottom, so that scrolling up to read is not interrupted.
const STICK_TO_BOTTOM_PX = 48;

export class ChatView {
  /**
   * @param {HTMLOListElement} list  the message list element
   * @param {HTMLElement} scroller   the element that scrolls the list
   * @param {HTMLElement} emptyState shown while the list is empty
   */
  constructor(list, scroller, emptyState) {
    this.list = list;
    this.scroller = scroller;
    this.emptyState = emptyState;
    this.reply = null; // {item, body, text, meta} of the reply being streamed
  }

  isNearBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight < STICK_TO_BOTTOM_PX;
  }

  /** Appends an element to the list and keeps the view at the bottom. */
  append(item) {
    this.list.append(item);
    this.emptyState.hidden = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  createMessage(role) {
    const item = document.createElement('li');
    item.className = `message message-${role}`;
    item.dataset.role = role;
    item.dataset.testid = `message-${role}`;

    const label = document.createElement('div');
    label.className = 'message-role';
    setText(label, role === 'user' ? 'chat.role_user' : 'chat.role_assistant');

    const body = document.createElement('div');
    body.className = 'message-body';
    body.dataset.testid = 'message-body';

    item.append(label, body);
    return { item, body };
  }

  addUserMessage(text) {
    const { item, body } = this.createMessage('user');
    body.textContent = text;
    this.append(item);
  }

  /** Starts an empty assistant message that `appendToken` fills. */
  startReply() {
    this.finishReply(null, null);
    const { item, body } = this.createMessage('assistant');
    item.classList.add('streaming');

    const placeholder = document.createElement('span');
    placeholder.className = 'message-placeholder';
    setText(placeholder, 'chat.thinking');
    body.append(placeholder);

    const meta = document.createElement('div');
    meta.className = 'message-meta';
    meta.dataset.testid = 'message-meta';
    item.append(meta);

    this.reply = { item, body, placeholder, text: null, meta };
    this.append(item);
  }

  /** Opens an assistant message unless one is already open. */
  ensureReply() {
    if (this.reply === null) {
      this.startReply();
    }
  }

  /**
   * Appends streamed reply text as a Text node (never parsed as HTML). Text
   * with no open reply is dropped: it is a token that was already on its way
   * when New chat cleared the list.
   */
  appendToken(text) {
    if (this.reply === null) {
      return;
    }
    const reply = this.reply;
    const follow = this.isNearBottom();
    if (reply.text === null) {
      reply.placeholder.remove();
      reply.text = document.createTextNode('');
      reply.body.append(reply.text);
    }
    reply.text.appendData(text);
    if (follow) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    }
  }

  /**
   * Ends the streamed reply. `reason` is the worker's done reason and
   * `stats` its timing (both may be null when the turn failed). Returns true
   * when the turn failed before any text, which removes the empty reply.
   */
  finishReply(reason, stats) {
    const reply = this.reply;
    if (reply === null) {
      return false;
    }
    this.reply = null;
    reply.item.classList.remove('streaming');
    if (reply.text === null && reason === null) {
      // The turn failed before any text: the error area explains it.
      reply.item.remove();
      this.emptyState.hidden = this.list.childElementCount > 0;
      return true;
    }
    if (reply.text === null) {
      reply.placeholder.remove();
      reply.item.classList.add('message-empty');
    }

    const parts = [];
    if (stats && stats.n_generated > 0) {
      const meta = document.createElement('span');
      const rate = stats.decode_tokens_per_s ?? 0;
      setText(meta, 'chat.reply_meta', {
        tokens: formatNumber(stats.n_generated),
        rate: formatNumber(rate, 1),
      });
      parts.push(meta);
    }
    if (reason && t(`chat.reason.${reason}`) !== '') {
      const note = document.createElement('span');
      note.className = `reply-reason reply-reason-${reason}`;
      note.dataset.testid = 'reply-reason';
      note.dataset.reason = reason;
      setText(note, `chat.reason.${reason}`);
      parts.push(note);
    }
    reply.meta.replaceChildren(...parts);
    reply.item.dataset.reason = reason ?? 'error';
    return false;
  }

  /** Removes the newest user message and returns its text, or null when there is none. */
  removeLastUserMessage() {
    const messages = this.list.querySelectorAll('.message-user');
    const last = messages[messages.length - 1];
    if (last === undefined) {
      return null;
    }
    last.remove();
    this.emptyState.hidden = this.list.childElementCount > 0;
    return last.querySelector('.message-body').textContent;
  }

  /**
   * Greys out the oldest `count` turns that the engine dropped from its
   * context. The newest user message belongs to the current turn and is
   * never marked.
   */
  markDroppedTurns(count) {
    const userMessages = [...this.list.querySelectorAll('.message-user:not(.dropped)')].slice(0, -1);
    for (const userMessage of userMessages.slice(0, count)) {
      userMessage.classList.add('dropped');
      let next = userMessage.nextElementSibling;
      while (next !== null && !next.classList.contains('message-user')) {
        if (next.classList.contains('message-assistant')) {
          next.classList.add('dropped');
        }
        next = next.nextElementSibling;
      }
    }
  }

  /** Adds a notice line (for example dropped turns) with a translated text. */
  addNotice(kind, key, params = {}) {
    const item = document.createElement('li');
    item.className = `notice notice-${kind}`;
    item.dataset.testid = `notice-${kind}`;
    item.setAttribute('role', 'status');
    setText(item, key, params);
    // A notice about the turn being generated goes above its reply.
    if (this.reply !== null && this.reply.item.parentNode === this.list) {
      this.list.insertBefore(item, this.reply.item);
      this.emptyState.hidden = true;
    } else {
      this.append(item);
    }
  }

  clear() {
    this.reply = null;
    this.list.replaceChildren();
    this.emptyState.hidden = false;
  }
}
